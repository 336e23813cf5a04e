import type { NatsConnection } from "@nats-io/transport-node";
import { ConflictMessage, PROTOCOL_VERSION, ResyncMessage, encode, resyncSubject } from "roster-schemas";
import type { Logger } from "pino";
import type { Effect } from "../core/catalog.js";
import type { RegistryMetrics } from "./metrics.js";
import type { DropLog } from "./nats/ingest.js";
import type { KvCatalog } from "./store/kv-catalog.js";

export interface EffectDeps {
  kv: () => KvCatalog | null;
  nc: () => NatsConnection | null;
  drops: DropLog;
  metrics: RegistryMetrics;
  counters: { resyncsPublished: number };
  logger: Logger;
}

/** Carries out what the catalog state machine decided: KV writes, resync requests, drops, logs. */
export function effectInterpreter(deps: EffectDeps): (effects: Effect[]) => void {
  const log = deps.logger;
  return (effects) => {
    for (const e of effects) {
      switch (e.type) {
        case "put":
          deps.kv()?.enqueue(e.record.service, e.record.id, e.record);
          break;
        case "delete":
          deps.kv()?.enqueue(e.service, e.id, null);
          break;
        case "resync":
          try {
            deps.nc()?.publish(resyncSubject(e.hostId), encode(ResyncMessage, { v: PROTOCOL_VERSION, kind: "resync", hostId: e.hostId, reason: e.reason }));
            deps.counters.resyncsPublished++;
          } catch (err) {
            log.warn({ err: String(err), hostId: e.hostId }, "resync publish failed");
          }
          break;
        case "reject":
          deps.drops.drop(e.reason, e.kind, { hostId: e.hostId });
          break;
        case "conflict":
          // Told once per register, on the subject the agent already listens to; not a resync.
          log.warn({ hostId: e.hostId, instances: e.instances.slice(0, 20) }, "refused instances owned by another live host");
          try {
            deps.nc()?.publish(resyncSubject(e.hostId), encode(ConflictMessage, {
              v: PROTOCOL_VERSION, kind: "conflict", hostId: e.hostId,
              instances: e.instances.map((c) => ({ service: c.service, instanceId: c.id, owner: c.owner })),
            }));
          } catch (err) {
            log.warn({ err: String(err), hostId: e.hostId }, "conflict notice publish failed");
          }
          break;
        case "degraded": {
          // One line on entry, one on exit, with what tripped it.
          const { since, threshold, windowMs } = e.info;
          const fields = { reason: e.info.reason, since, silentHosts: e.silent, hosts: e.hosts, threshold, windowMs };
          if (e.on) log.warn(fields, "catalog degraded: many hosts fell silent at once, suspecting our own network; expiry paused");
          else log.info({ ...fields, silentAtEntry: e.info.silent, durationMs: e.at - since }, "catalog no longer degraded: hosts are back; expiry resumed");
          break;
        }
      }
    }
  };
}
