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
  natsAuthMethod,
  natsConnectOptions,
  redactServers,
  redactUrl,
  resyncSubject,
} from "roster-schemas";
import type { FastifyInstance } from "fastify";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { splitHostPort, type RegistryConfig } from "./config.js";
import { CatalogState, sameRecord, type AgentInput, type Effect } from "./core/catalog.js";
import { CatalogMemory } from "./adapters/catalog-memory.js";
import { buildHttp, type StatusBody } from "./adapters/http.js";
import { DropLog, startIngest } from "./adapters/ingest.js";
import { KvCatalog } from "./adapters/kv-catalog.js";
import { RegistryMetrics } from "./adapters/metrics.js";
import { Replica } from "./adapters/replica.js";
import { SnapshotPages, deadlinePassed } from "./adapters/snapshot-pages.js";

export interface RegistryDeps {
  logger: Logger;
  now?: () => number;
  registryId?: string;
  /** Node process metrics on /metrics (the roster-registry process turns them on; off when embedded). */
  processMetrics?: boolean;
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
  readonly metrics: RegistryMetrics;
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
      selfPreservation: { threshold: config.selfPreservation.threshold, minHosts: config.selfPreservation.minHosts, windowMs: config.selfPreservation.window },
      assumedHeartbeatIntervalMs: config.assumedHeartbeatInterval,
    });
  // Replicas: a new writer rebuilds its state machine from KV (becomeWriter below).
  let core = newCore();
  const memory = new CatalogMemory();
  // Once, here: an unreadable secret file throws NatsAuthError now instead of failing every attempt.
  const natsOptions = natsConnectOptions(config.nats.url, config.nats, "nats.");
  const snapshots = new SnapshotPages((service) => memory.service(service), undefined, (service) => memory.serviceRevision(service));
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
  const counters = { resyncsPublished: 0, snapshotsServed: 0, reconnects: 0 };
  // Replicas (config.lease.enabled): only the lease holder writes; the others mirror KV.
  let replica: Replica | null = null;
  /** The lease holder has rebuilt its state from KV and may act (always true without a lease). */
  let writerReady = !config.lease.enabled;
  const acting = () => writerReady && (!replica || replica.role !== "standby");

  const status = (): StatusBody => {
    const s = core.summary();
    return {
      revision: memory.revision,
      hosts: s.hosts,
      lostHosts: s.lostHosts,
      instances: memory.instanceCount,
      services: memory.services().length,
      selfPreservation: s.selfPreservation,
      degraded: s.degraded !== null,
      ...(s.degraded ? { degradedReason: s.degraded.reason, degradedSince: s.degraded.since } : {}),
      drops: { total: drops.counters.total, byReason: { ...drops.counters.byReason }, byKind: { ...drops.counters.byKind } },
      natsConnected,
      catalogLoaded: loaded,
      registryId,
      ignored: { ...core.counters },
      kv: kv ? { ...kv.stats } : null,
      ...counters,
      ...(replica
        ? { ...replica.status(acting()), takeovers: replica.takeovers }
        : { role: "leader", leaseHolder: registryId, leaseEpoch: null, lease: null, mirror: null }),
    };
  };
  const ready = () => natsConnected && loaded;
  const metrics = new RegistryMetrics(
    {
      revision: () => memory.revision,
      instances: () => memory.instanceCount,
      services: () => memory.serviceCount,
      summary: () => core.summary(),
      natsConnected: () => natsConnected,
      catalogLoaded: () => loaded,
      kv: () => kv?.stats ?? null,
      drops,
      ignored: core.counters,
      counters,
    },
    { processMetrics: deps.processMetrics ?? false },
  );

  const http = buildHttp({
    catalog: memory,
    status,
    ready,
    loaded: () => loaded,
    degraded: () => core.degraded !== null,
    maxBlockingWaitMs: config.maxBlockingWait,
    stream: { maxOpen: config.streams.maxOpen, ringSize: config.streams.ringSize },
    logger: log.child({ component: "http" }),
    metrics: metrics.registry,
    security: config.http,
  });

  const dispatch = (effects: Effect[]) => {
    metrics.dispatched(effects);
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
        case "reject":
          drops.drop(e.reason, e.kind, { hostId: e.hostId });
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
    metrics.message(msg.kind);
    if (acting()) dispatch(core.handle(msg, now()));
  };

  const startSnapshotResponder = (conn: NatsConnection) =>
    conn.subscribe(SNAPSHOT_WILDCARD, {
      queue: REGISTRY_QUEUE,
      callback: (err, m) => {
        try {
          if (err) return;
          if (!m.reply) {
            drops.drop("no-reply", "snapshot", { subject: m.subject.slice(0, 200) });
            return;
          }
          const service = m.subject.slice(m.subject.lastIndexOf(".") + 1);
          if (!NAME_PATTERN.test(service)) {
            drops.drop("bad-subject", "snapshot", { subject: m.subject.slice(0, 200) });
            return;
          }
          // An empty body asks for page 0 (every service that fits one message).
          let page = 0;
          let revision: number | undefined;
          if (m.data.length > 0) {
            const req = decode(SnapshotRequest, m.data);
            if (!req.ok) {
              drops.drop(req.reason, "snapshot", { subject: m.subject.slice(0, 200), error: req.error });
              return;
            }
            page = req.value.page;
            revision = req.value.revision;
            // Waited in the queue past its requester's timeout: answering would cost CPU and
            // bandwidth for nobody (and feed a herd's congestion collapse).
            if (deadlinePassed(req.value.deadline, Date.now())) {
              drops.drop("expired", "snapshot", { subject: m.subject.slice(0, 200), late: Date.now() - req.value.deadline! });
              return;
            }
          }
          m.respond(snapshots.page(service, page, revision));
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

  const connectAndLoad = async () => {
    let delay = 200;
    let attempt = 0;
    while (!stopping.signal.aborted) {
      attempt++;
      try {
        nc = await connect({
          ...natsOptions,
          name: `roster-registry-${registryId}`,
          maxReconnectAttempts: -1,
          reconnectTimeWait: config.nats.reconnectWait,
          timeout: 5000,
        });
        break;
      } catch (err) {
        if (attempt === 1 || attempt % 20 === 0) log.warn({ err: String(err), url: redactServers(config.nats.url).join(","), attempt }, "NATS not reachable, retrying");
        await sleep(delay).catch(() => undefined);
        delay = Math.min(delay * 2, 2000);
      }
    }
    const conn = nc;
    if (!conn || stopping.signal.aborted) return;
    natsConnected = true;
    log.info({ server: redactUrl(conn.getServer()), auth: natsAuthMethod(config.nats), tls: config.nats.tls !== undefined && config.nats.tls !== false }, "connected to NATS");
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
        onWritten: metrics.written,
        ...(config.lease.enabled ? { gate: () => replica?.gate(natsConnected) ?? "hold" } : {}),
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
      replica = new Replica(store, {
        registryId,
        replicas: config.kvReplicas,
        ttlMs: config.lease.ttl,
        marginMs: config.lease.margin,
        logger: log.child({ component: "replica" }),
        signal: stopping.signal,
        // A new writer rebuilds its state machine from KV: grace + resync of every host (registry-start).
        becomeWriter: (loadedRecords) => {
          core = newCore();
          writerReady = true;
          dispatch(core.loaded(loadedRecords, now()));
        },
        becomeStandby: () => {
          writerReady = false;
        },
      });
      if (!(await replica.start(conn))) return;
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
            encode(PresenceMessage, {
              v: PROTOCOL_VERSION, kind: "presence", registryId, epoch, sentAt: Date.now(), revision: memory.revision, intervalMs: config.presenceInterval,
              ...(core.degraded ? { degraded: { reason: core.degraded.reason, since: core.degraded.since } } : {}),
            }),
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
      await replica?.close();
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
    metrics,
    status,
    ready,
    handle: onAgentMessage,
    [Symbol.asyncDispose]: close,
  };
}
