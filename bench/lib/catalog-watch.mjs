// An observer of what the registry writes: catalog deltas on the core subject, and the KV
// stream's own counters (the ground truth of how many writes happened).
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { CATALOG_BUCKET, CATALOG_WILDCARD, SUBJECT_PREFIX } from "roster-schemas";

export async function watchCatalog(natsUrl) {
  const nc = await connect({ servers: natsUrl, name: "bench-observer" });
  const jsm = await jetstreamManager(nc);
  const deltas = { count: 0, keys: new Set() };
  const heartbeats = { count: 0 };
  nc.subscribe(`${SUBJECT_PREFIX}.agent.*.heartbeat`, { callback: () => void heartbeats.count++ });
  nc.subscribe(CATALOG_WILDCARD, {
    callback: (_err, m) => {
      deltas.count++;
      try {
        const d = JSON.parse(new TextDecoder().decode(m.data));
        deltas.keys.add(`${d.service}.${d.instanceId}`);
      } catch {
        // counted anyway
      }
    },
  });
  return {
    deltas,
    /** Heartbeats seen on the wire (what the registry was sent). */
    heartbeats,
    /** { messages, lastSeq } of the catalog's KV stream; null while it does not exist. */
    async kvState() {
      try {
        const si = await jsm.streams.info(`KV_${CATALOG_BUCKET}`);
        return { messages: si.state.messages, lastSeq: si.state.last_seq };
      } catch {
        return null;
      }
    },
    close: () => nc.drain().catch(() => {}),
  };
}
