/**
 * The registry's Prometheus metrics (prom-client), on a Registry of its own (never the global
 * default one: two registries embedded in one process must not clash). Nearly everything is
 * read at scrape time from counters the registry already keeps (`collect()`); the only work on
 * the message path is one plain-object increment per agent message, and per catalog change one
 * plain increment and one observation of a histogram kept with plain numbers (hot-histogram.ts; the
 * decision time travels with the write: kv-catalog.ts).
 */
import { performance } from "node:perf_hooks";
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import type { AgentMessageKind, CatalogDelta } from "roster-schemas";
import type { CatalogCounters } from "../core/catalog.js";
import { HotHistogram } from "./hot-histogram.js";
import type { DropLog } from "./nats/ingest.js";
import type { KvCatalogStats } from "./store/kv-catalog.js";

/** What the metrics read at scrape time. */
export interface RegistryMetricsSource {
  revision(): number;
  instances(): number;
  services(): number;
  summary(): { hosts: number; lostHosts: number; selfPreservation: boolean };
  natsConnected(): boolean;
  catalogLoaded(): boolean;
  kv(): KvCatalogStats | null;
  /** The catalog store's health (adapters/store-guard.ts); null before it is checked. */
  store?(): { available: boolean; losses: number; recreations: number } | null;
  /** How far (ms) the time silence is judged at trails the processing clock (core/caught-up.ts); null before the first probe. */
  caughtUpLagMs?(): number | null;
  drops: DropLog;
  ignored: CatalogCounters;
  counters: { resyncsPublished: number; snapshotsServed: number; reconnects: number };
  /** The bulk lane (core/bulk-lane.ts): requests waiting, bulk work shed by reason. */
  lane?: () => { queued: number; shed: Record<string, number> };
}

export interface RegistryMetricsOptions {
  /** Node process metrics (CPU, memory, event loop); on for the roster-registry process. */
  processMetrics?: boolean;
  /** Labels added to every metric (e.g. `{ registry: id }` when several share one scrape). */
  defaultLabels?: Record<string, string>;
}

export class RegistryMetrics {
  readonly registry = new Registry();
  private readonly received: Record<string, number> = { register: 0, heartbeat: 0, health: 0, deregister: 0 };
  /** roster_registry_catalog_changes_total by op, read at scrape time: no label hashing per write. */
  private readonly changesByOp: Record<CatalogDelta["op"], number> = { put: 0, delete: 0 };
  private readonly lag: HotHistogram;

  constructor(src: RegistryMetricsSource, opts: RegistryMetricsOptions = {}) {
    const registers = [this.registry];
    if (opts.defaultLabels) this.registry.setDefaultLabels(opts.defaultLabels);
    if (opts.processMetrics) collectDefaultMetrics({ register: this.registry });

    // A counter whose value is read from an existing field at scrape time.
    const counterOf = (name: string, help: string, read: () => number) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(read());
        },
      });
    const gaugeOf = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read());
        },
      });

    gaugeOf("roster_registry_catalog_instances", "Instances in the catalog", () => src.instances());
    gaugeOf("roster_registry_catalog_services", "Services known to the catalog (delete markers included)", () => src.services());
    gaugeOf("roster_registry_catalog_revision", "Global catalog revision (the KV sequence of the last change)", () => src.revision());
    gaugeOf("roster_registry_hosts", "Hosts known to the registry", () => src.summary().hosts);
    gaugeOf("roster_registry_hosts_lost", "Hosts currently silent past their heartbeat timeout", () => src.summary().lostHosts);
    gaugeOf(
      "roster_registry_ingest_caught_up_lag_seconds",
      "How far behind now the registry has read every agent message (silence is judged at that time, not now)",
      () => (src.caughtUpLagMs?.() ?? 0) / 1000,
    );
    gaugeOf("roster_registry_self_preservation", "1 while self-preservation holds expiry (too many hosts silent at once)", () => (src.summary().selfPreservation ? 1 : 0));
    gaugeOf("roster_registry_nats_connected", "1 while connected to NATS", () => (src.natsConnected() ? 1 : 0));
    gaugeOf("roster_registry_catalog_loaded", "1 once the catalog is loaded from KV", () => (src.catalogLoaded() ? 1 : 0));
    gaugeOf("roster_registry_store_available", "0 while the catalog buckets are gone (a NATS node back with an empty store): writes held", () => (src.store?.()?.available === false ? 0 : 1));
    counterOf("roster_registry_store_losses_total", "Times the catalog buckets were found gone or behind", () => src.store?.()?.losses ?? 0);
    counterOf("roster_registry_store_recreations_total", "Times the catalog buckets were recreated and the catalog rewritten", () => src.store?.()?.recreations ?? 0);
    gaugeOf("roster_registry_kv_writes_pending", "Catalog writes queued, not yet written", () => src.kv()?.pending ?? 0);

    counterOf("roster_registry_snapshot_requests_total", "Snapshot requests answered over NATS", () => src.counters.snapshotsServed);
    gaugeOf("roster_registry_bulk_queued", "Snapshot requests waiting in the bulk lane", () => src.lane?.().queued ?? 0);
    new Counter({
      name: "roster_registry_bulk_shed_total",
      help: "Bulk work answered 'retry later' so transitions go first, by reason (queue-full: snapshot requests; http: 503 bodies)",
      labelNames: ["reason"],
      registers,
      collect() {
        this.reset();
        for (const [reason, n] of Object.entries(src.lane?.().shed ?? {})) this.inc({ reason }, n);
      },
    });
    counterOf("roster_registry_resyncs_published_total", "Resync requests published to agents", () => src.counters.resyncsPublished);
    counterOf("roster_registry_nats_reconnects_total", "NATS reconnects of the registry", () => src.counters.reconnects);
    counterOf("roster_registry_kv_writes_total", "Catalog writes to JetStream KV (puts and deletes)", () => src.kv()?.writes ?? 0);
    counterOf("roster_registry_kv_write_retries_total", "KV write attempts retried after a transient error", () => src.kv()?.retries ?? 0);
    counterOf("roster_registry_kv_write_conflicts_total", "KV compare-and-set conflicts (another writer changed the key)", () => src.kv()?.conflicts ?? 0);
    counterOf("roster_registry_kv_write_failures_total", "KV writes given up after every retry (the store is reconciled later)", () => src.kv()?.failures ?? 0);
    counterOf("roster_registry_kv_corrupt_records_total", "Corrupt catalog records skipped while loading", () => src.kv()?.corruptRecords ?? 0);

    const received = this.received;
    new Counter({
      name: "roster_registry_messages_received_total",
      help: "Valid agent messages received, by kind (register, heartbeat, health, deregister)",
      labelNames: ["kind"],
      registers,
      collect() {
        this.reset();
        for (const [kind, n] of Object.entries(received)) this.inc({ kind }, n);
      },
    });
    new Counter({
      name: "roster_registry_drops_total",
      help: "Agent and snapshot messages dropped, by reason and kind",
      labelNames: ["reason", "kind"],
      registers,
      collect() {
        this.reset();
        for (const [reason, kinds] of Object.entries(src.drops.byReasonAndKind)) {
          for (const [kind, n] of Object.entries(kinds)) this.inc({ reason, kind }, n);
        }
      },
    });
    new Counter({
      name: "roster_registry_lifecycle_events_total",
      help: "Events of the catalog state machine (stale, duplicate, takeover, conflict, futureEpoch, badInterval, reset, unknownInstance, lost, revived, expired, resyncRequested, resyncSuppressed), by event",
      labelNames: ["event"],
      registers,
      collect() {
        this.reset();
        for (const [event, n] of Object.entries(src.ignored)) this.inc({ event }, n);
      },
    });

    const changesByOp = this.changesByOp;
    new Counter({
      name: "roster_registry_catalog_changes_total",
      help: "Catalog changes written and published as deltas, by op (put, delete)",
      labelNames: ["op"],
      registers,
      collect() {
        this.reset();
        for (const [op, n] of Object.entries(changesByOp)) this.inc({ op }, n);
      },
    });
    this.lag = new HotHistogram(
      "roster_registry_delta_publish_lag_seconds",
      "From the decision (agent message or tick) to the KV write and delta publish",
      [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    );
    new Gauge({
      name: "roster_registry_delta_lag_tracked",
      help: "Catalog decisions waiting for their KV write (queued or in flight)",
      registers,
      collect() {
        const kv = src.kv();
        this.set(kv ? kv.pending + kv.inFlight : 0);
      },
    });
  }

  /** One valid agent message (the heartbeat path: one increment). */
  message(kind: AgentMessageKind): void {
    this.received[kind] = (this.received[kind] ?? 0) + 1;
  }

  /** A change written to KV and published as a delta; `decidedAt` (performance.now): its oldest decision. */
  readonly written = (delta: CatalogDelta, decidedAt: number): void => {
    this.changesByOp[delta.op]++;
    this.lag.observe((performance.now() - decidedAt) / 1000);
  };
}
