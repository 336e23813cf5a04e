import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { connectWithRetry, retry } from "roster-runtime";
import { CATALOG_BUCKET, catalogKey, parseCatalogKey, natsAuthMethod, natsConnectOptions, redactServers, redactUrl } from "roster-schemas";
import type { FastifyInstance } from "fastify";
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { Logger } from "pino";
import { registryIdentity, splitHostPort, type RegistryConfig } from "./config.js";
import { CatalogState, sameRecord, type AgentInput } from "./core/catalog.js";
import { Interner } from "./core/intern.js";
import { effectInterpreter } from "./adapters/effects.js";
import { buildFrontDoors, type FrontDoors } from "./adapters/front-doors.js";
import { RegistryMetrics } from "./adapters/metrics.js";
import { buildHttp, type StatusBody } from "./adapters/http/server.js";
import { DropLog, startIngest } from "./adapters/nats/ingest.js";
import { startPresence } from "./adapters/nats/presence.js";
import { CaughtUpProbe } from "./adapters/nats/caught-up-probe.js";
import { SnapshotPages } from "./adapters/nats/snapshot-pages.js";
import { startSnapshotResponder, type PendingSnapshot } from "./adapters/nats/snapshot-responder.js";
import { startLagProbe } from "./adapters/lag-probe.js";
import { BULK_LANE_DEFAULTS, BulkLane } from "./core/bulk-lane.js";
import { CatalogMemory } from "./adapters/store/catalog-memory.js";
import { StoreGuard } from "./adapters/store/guard.js";
import { KvCatalog } from "./adapters/store/kv-catalog.js";
import { LEASE_BUCKET } from "./adapters/store/lease-kv.js";
import { Replica } from "./adapters/store/replica.js";
import type { XdsServer } from "./adapters/xds/server.js";
import { registerHostRoutes } from "./adapters/http/hosts.js";
import { NotReadyError } from "./errors.js";
import { PolicyStore } from "./adapters/store/policy-store.js";
import { registerPolicyRoutes } from "./adapters/http/policy.js";

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
  /** The DNS interface and the Consul-compatible API (each null when not configured). */
  readonly frontDoors: FrontDoors;
  readonly core: CatalogState;
  readonly memory: CatalogMemory;
  readonly metrics: RegistryMetrics;
  /** The xDS server (config `xds`), or null. */
  readonly xds: XdsServer | null;
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
  const registryId = deps.registryId ?? registryIdentity(config, hostname(), randomUUID);
  // Presence carries it: a client that sees another epoch resyncs everything (a restart, or catalog
  // history that changed under this registry: KvCatalog's onHistoryChanged).
  let epoch = Date.now();
  // One table of shared record values for the state machine and the records loaded from KV.
  const interner = new Interner();
  const newCore = () =>
    new CatalogState({
      interner,
      heartbeatTimeoutMultiplier: config.heartbeatTimeoutMultiplier,
      deregisterAfterMs: config.deregisterAfter,
      selfPreservation: { threshold: config.selfPreservation.threshold, minHosts: config.selfPreservation.minHosts, windowMs: config.selfPreservation.window },
      assumedHeartbeatIntervalMs: config.assumedHeartbeatInterval,
      maxEpochSkewMs: config.epochSkew,
      maxHeartbeatIntervalMs: config.maxHeartbeatInterval,
    });
  // Replicas: a new writer rebuilds its state machine from KV (becomeWriter below).
  let core = newCore();
  const memory = new CatalogMemory();
  // Once, here: an unreadable secret file throws NatsAuthError now instead of failing every attempt.
  // noAsyncTraces: nats.js otherwise builds two Error objects (stack traces) for every request,
  // i.e. for every KV put: 8 % of the registry's CPU in a registration storm (docs/BENCHMARKS.md).
  // Our request errors are logged by message and key, never by the caller's stack.
  const natsOptions = { ...natsConnectOptions(config.nats.url, config.nats, "nats."), noAsyncTraces: true };
  const snapshots = new SnapshotPages(memory);
  // Snapshot requests and HTTP bodies give way to agent messages (core/bulk-lane.ts).
  const lane = new BulkLane<PendingSnapshot>({ ...BULK_LANE_DEFAULTS, maxQueued: config.bulkLane.maxQueued, maxLagMs: config.bulkLane.maxLag, overloadedBodiesPerS: config.bulkLane.overloadedBodiesPerSecond });
  const drops = new DropLog(log.child({ component: "ingest" }));
  const stopping = new AbortController();

  let nc: NatsConnection | null = null;
  // Heartbeats and snapshot requests arrive on a connection of their own (config nats.bulkConnection).
  let bulk: NatsConnection | null = null;
  // The writer lease renews on a connection of its own: never queued behind bulk KV puts or their acks.
  let leaseConn: NatsConnection | null = null;
  let writes: NatsConnection | null = null;
  let kv: KvCatalog | null = null;
  // Notices a NATS node back with an empty store, holds writes, recreates the buckets.
  let guard: StoreGuard | null = null;
  const storeAvailable = () => guard?.available ?? true;
  let natsConnected = false;
  let loaded = false;
  let dirty = false;
  let url = "";
  const subs: Subscription[] = [];
  let probe: CaughtUpProbe | null = null;
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
      store: { available: storeAvailable(), losses: guard?.losses ?? 0, recreations: guard?.recreations ?? 0, lostAt: guard?.lostAt ?? null },
      bulk: { queued: lane.queued, served: lane.counters.served, shed: { ...lane.counters.shed } },
      policies: { ready: policies.ready, count: policies.list().filter((e) => e.policy !== null).length, ...policies.stats },
      ...counters,
      ...(replica
        ? { ...replica.status(acting()), takeovers: replica.takeovers }
        : { role: "leader", leaseHolder: registryId, leaseEpoch: null, lease: null, mirror: null }),
    };
  };
  const ready = () => natsConnected && loaded && storeAvailable();
  const metrics = new RegistryMetrics(
    {
      revision: () => memory.revision,
      instances: () => memory.instanceCount,
      services: () => memory.serviceCount,
      summary: () => core.summary(),
      natsConnected: () => natsConnected,
      catalogLoaded: () => loaded,
      kv: () => kv?.stats ?? null,
      store: () => guard,
      caughtUpLagMs: () => probe?.lagMs() ?? null,
      drops,
      ignored: core.counters,
      counters,
      lane: () => ({ queued: lane.queued, shed: lane.counters.shed }),
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
    stream: { maxOpen: config.streams.maxOpen, ringSize: config.streams.ringSize, maxPerClient: config.streams.maxPerClient, maxBufferedBytes: config.streams.maxBufferedBytes },
    logger: log.child({ component: "http" }),
    metrics: metrics.registry,
    security: config.http,
    bulk: {
      admit: () => !config.bulkLane.enabled || lane.admitBody(performance.now()),
      retryAfterMs: () => lane.retryAfterMs(),
    },
  });
  registerHostRoutes(http, {
    // Only the writer holds the epoch/seq gate; a standby has nothing to reset.
    reset: (hostId) => {
      if (!acting()) throw new NotReadyError("this registry is a standby: reset the host on the lease holder");
      const r = core.reset(hostId, now());
      dispatch(r.effects);
      if (r.known) log.warn({ hostId }, "host reset by an operator: its epoch/seq gate is cleared and it was asked to resync");
      return r.known;
    },
    authConfigured: config.http.auth !== undefined,
  });

  // Traffic policies (policy-store.ts): their own bucket, watched by every replica.
  const policies = new PolicyStore({ replicas: config.kvReplicas, logger: log.child({ component: "policy" }) });
  registerPolicyRoutes(http, { store: () => policies, catalog: memory });

  const frontDoors = buildFrontDoors(config, { memory, loaded: () => loaded, ready, whenReady: readyPromise, metrics: metrics.registry, registryId, logger: log });

  const dispatch = effectInterpreter({ kv: () => kv, nc: () => nc, drops, metrics, counters, logger: log });

  /** After a failed write: make the store match the state machine again. */
  const reconcile = () => {
    if (!kv || !kv.idle) return;
    dirty = false;
    const want = new Map(core.records().map((r) => [catalogKey(r.service, r.id), r]));
    // Keys whose write was given up: memory shows them, the store may not.
    const unconfirmed = kv.takeUnconfirmed();
    for (const [key, r] of want) {
      const have = memory.get(r.service, r.id);
      if (!have || !sameRecord(have, r) || unconfirmed.has(key)) kv.enqueue(r.service, r.id, r);
    }
    for (const r of memory.all()) if (!want.has(catalogKey(r.service, r.id))) kv.enqueue(r.service, r.id, null);
    for (const key of unconfirmed) {
      const k = parseCatalogKey(key);
      if (k && !want.has(key) && !memory.get(k.service, k.instanceId)) kv.enqueue(k.service, k.instanceId, null, true);
    }
    log.info("catalog reconciled after a failed write");
  };

  // A standby drops agent traffic: a new writer rebuilds from KV and asks every host to resync.
  const onAgentMessage = (msg: AgentInput) => {
    metrics.message(msg.kind);
    if (acting()) dispatch(core.handle(msg, now()));
  };

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

  /** One of the registry's NATS connections (`roster-registry-<id>[-<role>]`), retried until it connects or the registry stops; null then. */
  const dial = (role: string | null, logFields?: Record<string, unknown>) =>
    connectWithRetry(
      { ...natsOptions, name: `roster-registry-${registryId}${role ? `-${role}` : ""}`, maxReconnectAttempts: -1, reconnectTimeWait: config.nats.reconnectWait, timeout: 5000 },
      { signal: stopping.signal, logger: log, ...(logFields ? { logFields } : {}) },
    ).catch(() => null);

  const connectAndLoad = async () => {
    nc = await dial(null, { url: redactServers(config.nats.url).join(",") });
    const conn = nc;
    if (!conn || stopping.signal.aborted) return;
    natsConnected = true;
    log.info({ server: redactUrl(conn.getServer()), auth: natsAuthMethod(config.nats), tls: config.nats.tls !== undefined && config.nats.tls !== false }, "connected to NATS");
    void watchStatus(conn).catch(() => undefined);
    if (config.nats.bulkConnection) {
      bulk = await dial("bulk");
      if (!bulk || stopping.signal.aborted) return;
    }
    // The catalog writes and their acks on a connection of their own: deltas never wait behind a
    // write nats-server is slow to take, acks never behind a storm of registrations (kv-catalog.ts).
    writes = await dial("writes");
    if (!writes || stopping.signal.aborted) return;
    const kvLog = log.child({ component: "kv" });
    const store = await KvCatalog.open(
      conn,
      memory,
      {
        replicas: config.kvReplicas,
        retryForMs: config.kvWriteRetryFor,
        logger: kvLog,
        interner,
        onWriteFailed: () => {
          dirty = true;
        },
        onWritten: metrics.written,
        onError: (err) => guard?.suspect(err),
        onHistoryChanged: () => {
          epoch = Math.max(Date.now(), epoch + 1);
          log.warn({ epoch }, "new registry epoch: every gateway client resyncs");
        },
        ...(natsOptions.inboxPrefix ? { inboxPrefix: natsOptions.inboxPrefix } : {}),
        writeConnection: writes,
        // While the buckets are gone writes wait (merged per key); with the lease, only its holder writes.
        gate: () => (!storeAvailable() ? "hold" : config.lease.enabled ? (replica?.gate(natsConnected) ?? "hold") : "write"),
      },
      stopping.signal,
    );
    const loadRecords = () =>
      retry(() => store.load(), {
        initialMs: 200,
        signal: stopping.signal,
        giveUp: () => conn.isClosed(),
        onError: (err) => kvLog.warn({ err: String(err) }, "catalog load failed, retrying"),
      }).catch(() => null);
    let records: Awaited<ReturnType<typeof loadRecords>> = [];
    const listenToAgents = () => subs.push(...startIngest(conn, drops, onAgentMessage, log.child({ component: "ingest" }), bulk ?? conn));
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
      // Agents are heard before the lease is decided (a standby drops them, see onAgentMessage): a
      // new writer asks every host to resync as it takes over, and the answers must not arrive
      // before anyone listens (the start-up awaits below would otherwise swallow them).
      listenToAgents();
      leaseConn = await dial("lease");
      if (!leaseConn || stopping.signal.aborted) return;
      if (!(await replica.start(leaseConn))) return;
    } else {
      records = await loadRecords();
      if (!records || stopping.signal.aborted) return;
      kv = store;
      dispatch(core.loaded(records, now()));
      listenToAgents();
    }
    guard = new StoreGuard(conn, {
      buckets: [
        { name: CATALOG_BUCKET, replicas: config.kvReplicas, revision: () => store.confirmedRevision },
        ...(config.lease.enabled ? [{ name: LEASE_BUCKET, replicas: config.kvReplicas, revision: () => replica?.leaseRevision ?? 0 }] : []),
      ],
      intervalMs: config.storeCheckInterval,
      logger: log.child({ component: "store" }),
      connected: () => natsConnected,
      onLost: () => undefined,
      onRestored: (recreated) => {
        if (!recreated) return;
        store.storeRecreated();
        void replica?.storeRecreated();
        // Rewrite the catalog as the state machine holds it, then let the agents correct it.
        if (acting()) dispatch(core.storeRecreated(now()));
      },
    });
    guard.start();
    // Before presence goes out: a client that sees this registry asks for policies at once.
    await policies.attach(conn, stopping.signal);
    loaded = true;
    subs.push(startSnapshotResponder(bulk ?? conn, { snapshots, drops, logger: log, lane, enabled: config.bulkLane.enabled, served: () => void counters.snapshotsServed++ }));
    // Silence is judged against what the registry has read, not its own lag (core/caught-up.ts).
    probe = new CaughtUpProbe({
      paths: [{ name: "main", nc: conn }, ...(bulk && bulk !== conn ? [{ name: "bulk", nc: bulk }] : [])],
      ...(natsOptions.inboxPrefix ? { inboxPrefix: natsOptions.inboxPrefix } : {}),
      now,
      logger: log,
    });
    const caughtUp = probe;
    timers.push(
      setInterval(() => {
        try {
          caughtUp.probe();
          if (!natsConnected || !acting()) return; // no silence is judged while the registry itself is cut off
          dispatch(core.tick(now(), caughtUp.heardUpTo()));
          if (dirty) reconcile();
        } catch (err) {
          log.error({ err: String(err) }, "tick failed");
        }
      }, config.tickInterval),
      startPresence(conn, {
        registryId,
        epoch: () => epoch,
        intervalMs: config.presenceInterval,
        revision: () => memory.revision,
        degraded: () => core.degraded,
        // No presence while cut off, not the writer, or the store is lost: clients must say stale.
        publishing: () => natsConnected && acting() && storeAvailable(),
        logger: log,
      }),
    );
    log.info({ url, instances: memory.instanceCount, revision: memory.revision, role: acting() ? "leader" : "standby" }, "registry ready");
    resolveReady();
  };

  let closed: Promise<void> | null = null;
  const close = () => {
    closed ??= (async () => {
      stopping.abort();
      guard?.stop();
      for (const t of timers) clearInterval(t);
      for (const s of subs) s.unsubscribe();
      probe?.stop();
      await connecting?.catch(() => undefined);
      if (kv && !(await kv.flush(10_000, true))) log.warn("closing with catalog writes still pending");
      // After the last write: hand the lease over at once rather than after a ttl.
      await replica?.close();
      await frontDoors.close();
      await policies.close();
      await http.close();
      if (bulk && !bulk.isClosed()) await bulk.close().catch(() => undefined);
      if (leaseConn && !leaseConn.isClosed()) await leaseConn.close().catch(() => undefined);
      if (writes && !writes.isClosed()) await writes.close().catch(() => undefined);
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
      // Only the lane reads the lag (to shed): with it off, no 50 ms timer for nothing.
      if (config.bulkLane.enabled) timers.push(startLagProbe((lagMs, at) => lane.noteLag(lagMs, at)));
      await frontDoors.start();
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
    frontDoors,
    get core() {
      return core;
    },
    memory,
    metrics,
    xds: frontDoors.xds,
    status,
    ready,
    handle: onAgentMessage,
    [Symbol.asyncDispose]: close,
  };
}
