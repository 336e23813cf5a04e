import { connect, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import {
  NAME_PATTERN,
  PRESENCE_SUBJECT,
  PROTOCOL_VERSION,
  PresenceMessage,
  REGISTRY_QUEUE,
  ResyncMessage,
  SNAPSHOT_WILDCARD,
  SnapshotRequest,
  decode,
  encode,
  resyncSubject,
} from "@roster/schemas";
import type { FastifyInstance } from "fastify";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { splitHostPort, type RegistryConfig } from "./config.js";
import { CatalogState, sameRecord, type AgentInput, type Effect } from "./core/catalog.js";
import type { CatalogInstance } from "@roster/schemas";
import { CatalogMemory } from "./adapters/catalog-memory.js";
import { buildHttp, type StatusBody } from "./adapters/http.js";
import { DropLog, startIngest } from "./adapters/ingest.js";
import { KvCatalog, type WriteGate } from "./adapters/kv-catalog.js";
import { CatalogMirror } from "./adapters/catalog-mirror.js";
import { KvLease } from "./adapters/lease-kv.js";
import type { LeaseEvent } from "./core/lease.js";
import { SnapshotPages } from "./adapters/snapshot-pages.js";

export interface RegistryDeps {
  logger: Logger;
  now?: () => number;
  registryId?: string;
}

export interface Registry {
  /** Listens on HTTP, then connects to NATS in the background (retrying forever). */
  start(): Promise<void>;
  /** Resolves once connected to NATS and the catalog is loaded. */
  whenReady(): Promise<void>;
  /** Stops accepting, finishes in-flight KV writes, closes HTTP, drains NATS. */
  close(): Promise<void>;
  readonly url: string;
  readonly http: FastifyInstance;
  readonly core: CatalogState;
  readonly memory: CatalogMemory;
  status(): StatusBody;
  ready(): boolean;
  /** Handles one validated agent message as ingest does (for embedding and tests). */
  handle(msg: AgentInput): void;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Wires the pure catalog state machine to NATS, JetStream KV and HTTP. */
export function build(config: RegistryConfig, deps: RegistryDeps): Registry {
  const log = deps.logger;
  const now = deps.now ?? Date.now;
  const registryId = deps.registryId ?? randomUUID();
  const epoch = Date.now();
  const newCore = () =>
    new CatalogState({
      heartbeatTimeoutMultiplier: config.heartbeatTimeoutMultiplier,
      deregisterAfterMs: config.deregisterAfter,
      selfPreservation: config.selfPreservation,
      assumedHeartbeatIntervalMs: config.assumedHeartbeatInterval,
    });
  // Replicas: a new writer rebuilds its state machine from KV (see takeOver).
  let core = newCore();
  const memory = new CatalogMemory();
  const snapshots = new SnapshotPages((service) => memory.service(service));
  const drops = new DropLog(log.child({ component: "ingest" }));
  const stopping = new AbortController();

  let nc: NatsConnection | null = null;
  let kv: KvCatalog | null = null;
  let natsConnected = false;
  let loaded = false;
  let dirty = false;
  let url = "";
  const subs: Subscription[] = [];
  const timers: NodeJS.Timeout[] = [];
  let resolveReady!: () => void;
  const readyPromise = new Promise<void>((r) => (resolveReady = r));
  let connecting: Promise<void> | null = null;
  const counters = { resyncsPublished: 0, snapshotsServed: 0, reconnects: 0, takeovers: 0 };
  // Replicas (config.lease.enabled): only the lease holder writes; the others mirror KV.
  let lease: KvLease | null = null;
  let mirror: CatalogMirror | null = null;
  /** The lease holder has rebuilt its state from KV and may act (always true without a lease). */
  let writerReady = !config.lease.enabled;
  const acting = () => writerReady && (!lease || lease.state.role !== "standby");

  const status = (): StatusBody => {
    const s = core.summary();
    return {
      revision: memory.revision,
      hosts: s.hosts,
      lostHosts: s.lostHosts,
      instances: memory.instanceCount,
      services: memory.services().length,
      selfPreservation: s.selfPreservation,
      drops: { total: drops.counters.total, byReason: { ...drops.counters.byReason }, byKind: { ...drops.counters.byKind } },
      natsConnected,
      catalogLoaded: loaded,
      registryId,
      ignored: { ...core.counters },
      kv: kv ? { ...kv.stats } : null,
      ...counters,
      role: acting() ? "leader" : "standby",
      leaseHolder: lease ? (lease.state.holder?.registryId ?? null) : registryId,
      leaseEpoch: lease ? lease.state.epoch : null,
      lease: lease ? lease.status() : null,
      mirror: mirror ? { current: mirror.current, applied: mirror.applied, restarts: mirror.restarts } : null,
    };
  };
  const ready = () => natsConnected && loaded;

  const http = buildHttp({
    catalog: memory,
    status,
    ready,
    loaded: () => loaded,
    maxBlockingWaitMs: config.maxBlockingWait,
    logger: log.child({ component: "http" }),
  });

  const dispatch = (effects: Effect[]) => {
    for (const e of effects) {
      switch (e.type) {
        case "put":
          kv?.enqueue(e.record.service, e.record.id, e.record);
          break;
        case "delete":
          kv?.enqueue(e.service, e.id, null);
          break;
        case "resync":
          try {
            nc?.publish(resyncSubject(e.hostId), encode(ResyncMessage, { v: PROTOCOL_VERSION, kind: "resync", hostId: e.hostId, reason: e.reason }));
            counters.resyncsPublished++;
          } catch (err) {
            log.warn({ err: String(err), hostId: e.hostId }, "resync publish failed");
          }
          break;
      }
    }
  };

  /** After a failed write: make the store match the state machine again. */
  const reconcile = () => {
    if (!kv || !kv.idle) return;
    dirty = false;
    const want = new Map(core.records().map((r) => [`${r.service}.${r.id}`, r]));
    for (const r of want.values()) {
      const have = memory.get(r.service, r.id);
      if (!have || !sameRecord(have, r)) kv.enqueue(r.service, r.id, r);
    }
    for (const r of memory.all()) if (!want.has(`${r.service}.${r.id}`)) kv.enqueue(r.service, r.id, null);
    log.info("catalog reconciled after a failed write");
  };

  // A standby drops agent traffic: a new writer rebuilds from KV and asks every host to resync.
  const onAgentMessage = (msg: AgentInput) => {
    if (acting()) dispatch(core.handle(msg, now()));
  };

  const startSnapshotResponder = (conn: NatsConnection) =>
    conn.subscribe(SNAPSHOT_WILDCARD, {
      queue: REGISTRY_QUEUE,
      callback: (err, m) => {
        try {
          if (err || !m.reply) return;
          const service = m.subject.slice(m.subject.lastIndexOf(".") + 1);
          if (!NAME_PATTERN.test(service)) {
            drops.drop("bad-subject", "snapshot", { subject: m.subject.slice(0, 200) });
            return;
          }
          // An empty body asks for page 0 (every service that fits one message).
          let page = 0;
          if (m.data.length > 0) {
            const req = decode(SnapshotRequest, m.data);
            if (!req.ok) {
              drops.drop(req.reason, "snapshot", { subject: m.subject.slice(0, 200), error: req.error });
              return;
            }
            page = req.value.page;
          }
          m.respond(snapshots.page(service, page));
          counters.snapshotsServed++;
        } catch (e) {
          log.error({ err: String(e), subject: m.subject }, "snapshot request failed");
        }
      },
    });

  const watchStatus = async (conn: NatsConnection) => {
    for await (const s of conn.status()) {
      if (s.type === "disconnect") {
        natsConnected = false;
        log.warn({ server: s.server }, "NATS disconnected: serving HTTP from memory");
      } else if (s.type === "reconnect") {
        natsConnected = true;
        counters.reconnects++;
        // The registry's own outage must never expire the world.
        if (acting()) dispatch(core.grace(now()));
        log.info({ server: s.server }, "NATS reconnected: every host gets a grace period");
      }
    }
  };

  /**
   * Replicas: start as a standby (mirror KV into memory, serve reads), then follow the lease.
   * Resolves true once the mirror has caught up (false if stopped first).
   */
  const startReplica = async (conn: NatsConnection, store: KvCatalog): Promise<boolean> => {
    const replicaLog = log.child({ component: "replica" });
    let transition: Promise<void> = Promise.resolve();
    const startMirror = () => {
      mirror = new CatalogMirror(store, replicaLog);
      return mirror.start();
    };
    /** A new writer: stop mirroring, rebuild from KV, grace + resync every host (registry-start). */
    const takeOver = async (epoch: number) => {
      const startedAt = performance.now();
      await mirror?.stop();
      mirror = null;
      let records: CatalogInstance[] | null = null;
      for (let delayMs = 100; !stopping.signal.aborted && lease?.state.role !== "standby"; delayMs = Math.min(delayMs * 2, 1000)) {
        try {
          records = await store.load();
          break;
        } catch (err) {
          replicaLog.warn({ err: String(err) }, "catalog load at takeover failed, retrying");
          await sleep(delayMs);
        }
      }
      if (!records || stopping.signal.aborted || lease?.state.role === "standby") return;
      core = newCore();
      writerReady = true;
      counters.takeovers++;
      dispatch(core.loaded(records, now()));
      replicaLog.info({ epoch, instances: records.length, revision: memory.revision, tookMs: Math.round(performance.now() - startedAt) }, "took over as the catalog writer");
    };
    const stepDown = async () => {
      writerReady = false;
      if (!mirror && !stopping.signal.aborted) await startMirror();
    };
    const onLease = (e: LeaseEvent) => {
      if (e.type === "elected") transition = transition.then(() => takeOver(e.epoch)).catch((err) => replicaLog.error({ err: String(err) }, "takeover failed"));
      else if (e.type === "lost") transition = transition.then(stepDown).catch((err) => replicaLog.error({ err: String(err) }, "step-down failed"));
    };
    await startMirror();
    if (stopping.signal.aborted) return false;
    lease = await KvLease.open(
      conn,
      { registryId, replicas: config.kvReplicas, ttlMs: config.lease.ttl, marginMs: config.lease.margin, logger: log.child({ component: "lease" }), onEvent: onLease },
      stopping.signal,
    );
    lease.start();
    return !stopping.signal.aborted;
  };

  const connectAndLoad = async () => {
    let delay = 200;
    let attempt = 0;
    while (!stopping.signal.aborted) {
      attempt++;
      try {
        nc = await connect({
          servers: config.nats.url.split(",").map((s) => s.trim()),
          name: `roster-registry-${registryId}`,
          maxReconnectAttempts: -1,
          reconnectTimeWait: config.nats.reconnectWait,
          timeout: 5000,
        });
        break;
      } catch (err) {
        if (attempt === 1 || attempt % 20 === 0) log.warn({ err: String(err), url: config.nats.url, attempt }, "NATS not reachable, retrying");
        await sleep(delay).catch(() => undefined);
        delay = Math.min(delay * 2, 2000);
      }
    }
    const conn = nc;
    if (!conn || stopping.signal.aborted) return;
    natsConnected = true;
    log.info({ server: conn.getServer() }, "connected to NATS");
    void watchStatus(conn).catch(() => undefined);
    const kvLog = log.child({ component: "kv" });
    const store = await KvCatalog.open(
      conn,
      memory,
      {
        replicas: config.kvReplicas,
        retryForMs: config.kvWriteRetryFor,
        logger: kvLog,
        onWriteFailed: () => {
          dirty = true;
        },
        ...(config.lease.enabled
          ? { gate: (): WriteGate => (lease?.canWrite() && natsConnected && writerReady ? "write" : lease?.state.role === "standby" ? "drop" : "hold") }
          : {}),
      },
      stopping.signal,
    );
    const loadRecords = async () => {
      for (let delayMs = 200; ; delayMs = Math.min(delayMs * 2, 2000)) {
        try {
          return await store.load();
        } catch (err) {
          if (stopping.signal.aborted || conn.isClosed()) return null;
          kvLog.warn({ err: String(err) }, "catalog load failed, retrying");
          await sleep(delayMs);
        }
      }
    };
    let records: Awaited<ReturnType<typeof loadRecords>> = [];
    if (config.lease.enabled) {
      kv = store;
      const r = await startReplica(conn, store);
      if (!r) return;
    } else {
      records = await loadRecords();
      if (!records || stopping.signal.aborted) return;
      kv = store;
      dispatch(core.loaded(records, now()));
    }
    loaded = true;
    subs.push(startIngest(conn, drops, onAgentMessage, log.child({ component: "ingest" })));
    subs.push(startSnapshotResponder(conn));
    timers.push(
      setInterval(() => {
        try {
          if (!natsConnected || !acting()) return; // no silence is judged while the registry itself is cut off
          dispatch(core.tick(now()));
          if (dirty) reconcile();
        } catch (err) {
          log.error({ err: String(err) }, "tick failed");
        }
      }, config.tickInterval),
      setInterval(() => {
        try {
          if (!natsConnected || !acting()) return;
          conn.publish(
            PRESENCE_SUBJECT,
            encode(PresenceMessage, { v: PROTOCOL_VERSION, kind: "presence", registryId, epoch, sentAt: Date.now(), revision: memory.revision, intervalMs: config.presenceInterval }),
          );
        } catch (err) {
          log.warn({ err: String(err) }, "presence publish failed");
        }
      }, config.presenceInterval),
    );
    log.info({ url, instances: memory.instanceCount, revision: memory.revision, role: acting() ? "leader" : "standby" }, "registry ready");
    resolveReady();
  };

  let closed: Promise<void> | null = null;
  const close = () => {
    closed ??= (async () => {
      stopping.abort();
      for (const t of timers) clearInterval(t);
      for (const s of subs) s.unsubscribe();
      await connecting?.catch(() => undefined);
      if (kv && !(await kv.flush(10_000, true))) log.warn("closing with catalog writes still pending");
      // After the last write: hand the lease over at once rather than after a ttl.
      await lease?.close(true);
      await mirror?.stop();
      await http.close();
      if (nc && !nc.isClosed()) {
        // drain() waits for the server: bounded, so a shutdown during a NATS outage still ends.
        const conn = nc;
        let t: NodeJS.Timeout | undefined;
        const drained = await Promise.race([
          conn.drain().then(() => true, () => false),
          new Promise<boolean>((r) => (t = setTimeout(() => r(false), 5000))),
        ]);
        clearTimeout(t);
        if (!drained) await conn.close().catch(() => undefined);
      }
      log.info("registry stopped");
    })();
    return closed;
  };

  return {
    async start() {
      const { host, port } = splitHostPort(config.http.listen);
      const address = await http.listen({ host, port });
      url = address.replace("[::1]", "[::1]");
      log.info({ url }, "HTTP listening");
      connecting = connectAndLoad().catch((err) => {
        if (!stopping.signal.aborted) log.error({ err: String(err) }, "registry start failed");
      });
    },
    whenReady: () => readyPromise,
    close,
    get url() {
      return url;
    },
    http,
    get core() {
      return core;
    },
    memory,
    status,
    ready,
    handle: onAgentMessage,
    [Symbol.asyncDispose]: close,
  };
}
