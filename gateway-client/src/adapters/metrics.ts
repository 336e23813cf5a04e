/**
 * The gateway's Prometheus metrics (prom-client) for the host application to mount: no HTTP
 * server here, and never prom-client's global registry. Every value is read at scrape time
 * from counters and state the gateway already keeps (`collect()`), so the request path pays
 * nothing but the plain-object increments it already did (plus one per returned response).
 *
 * Several gateways may share one Registry: the metrics are created once per Registry and
 * each gateway adds its series under its own `gateway` label (its `name` option).
 */
import { Counter, Gauge, Registry } from "prom-client";
import type { ServiceRuntime } from "./engine.js";
import type { RequestErrors } from "./request-errors.js";
import { nowMs } from "./clock.js";

export { RequestErrors } from "./request-errors.js";

/** What one gateway exposes to the metrics. */
export interface GatewayMetricsSource {
  /** The `gateway` label value. */
  readonly name: string;
  runtimes(): Iterable<ServiceRuntime>;
  isStale(): boolean;
  revision(service: string): number;
  readonly errors: RequestErrors;
  /** The service's traffic policy counters (docs/traffic-policy.md), if a policy ever applied. */
  policyCounters?(service: string): Readonly<Record<string, number>> | undefined;
}

const BREAKER_VALUE = { closed: 0, "half-open": 1, open: 2 } as const;

/** The gateways reporting into each Registry (the metrics themselves are created once per Registry). */
const attached = new WeakMap<Registry, Map<string, GatewayMetricsSource>>();

/**
 * Adds a gateway's series to `registry` (created on first use). Returns a detach function.
 * Throws when a gateway of the same name already reports into that Registry.
 */
export function attachGatewayMetrics(registry: Registry, src: GatewayMetricsSource): () => void {
  let sources = attached.get(registry);
  if (!sources) {
    sources = new Map();
    attached.set(registry, sources);
    defineMetrics(registry, sources);
  }
  if (sources.has(src.name)) throw new Error(`a gateway named "${src.name}" already reports into this metrics Registry: give each gateway its own name`);
  sources.set(src.name, src);
  const all = sources;
  return () => {
    if (all.get(src.name) === src) all.delete(src.name);
  };
}

function defineMetrics(registry: Registry, sources: Map<string, GatewayMetricsSource>): void {
  const registers = [registry];
  type Row = { gateway: string; service: string; rt: ServiceRuntime; src: GatewayMetricsSource };
  const rows = function* (): Generator<Row> {
    for (const src of sources.values()) for (const rt of src.runtimes()) yield { gateway: src.name, service: rt.name, rt, src };
  };
  const perService = (name: string, help: string, read: (rt: ServiceRuntime) => number) =>
    new Counter({
      name,
      help,
      labelNames: ["gateway", "service"],
      registers,
      collect() {
        this.reset();
        for (const { gateway, service, rt } of rows()) this.inc({ gateway, service }, read(rt));
      },
    });
  const perServiceGauge = (name: string, help: string, read: (r: Row, now: number) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ["gateway", "service"],
      registers,
      collect() {
        this.reset();
        const now = nowMs(); // the balancers' clock
        for (const r of rows()) this.set({ gateway: r.gateway, service: r.service }, read(r, now));
      },
    });

  new Counter({
    name: "roster_gateway_requests_total",
    help: 'Requests finished, by service and outcome ("response": a response was returned, whatever its status; otherwise the error code)',
    labelNames: ["gateway", "service", "outcome"],
    registers,
    collect() {
      this.reset();
      for (const { gateway, service, rt } of rows()) this.inc({ gateway, service, outcome: "response" }, rt.counters.responses);
      for (const src of sources.values()) {
        for (const [service, codes] of src.errors.byService) for (const [outcome, n] of codes) this.inc({ gateway: src.name, service, outcome }, n);
      }
    },
  });
  new Counter({
    name: "roster_gateway_policy_events_total",
    help: "Traffic policy decisions by kind: redistributed (a subset with no usable instance gave its share away), routed, throttled, rateLimited, fallbackStatic, fallbackStale, loadSignals (429/503 with Retry-After)",
    labelNames: ["gateway", "service", "kind"],
    registers,
    collect() {
      this.reset();
      for (const { gateway, service, src } of rows()) {
        const c = src.policyCounters?.(service);
        if (c) for (const kind of ["redistributed", "routed", "throttled", "rateLimited", "fallbackStatic", "fallbackStale", "loadSignals"]) this.inc({ gateway, service, kind }, c[kind] ?? 0);
      }
    },
  });
  perService("roster_gateway_requests_started_total", "Requests started (a concurrency slot taken)", (rt) => rt.counters.requests);
  perService("roster_gateway_tries_total", "Tries sent to an endpoint (first tries, retries and hedges)", (rt) => rt.counters.tries);
  perService("roster_gateway_retries_total", "Retries to another endpoint", (rt) => rt.counters.retries);
  perService("roster_gateway_hedges_total", "Hedged tries sent", (rt) => rt.counters.hedges);
  perService("roster_gateway_retry_budget_exhausted_total", "Retries refused by the retry budget", (rt) => rt.counters.budgetExhausted);
  perService("roster_gateway_ejections_total", "Endpoints ejected by outlier detection", (rt) => rt.balancer.ejectionsTotal);

  perServiceGauge("roster_gateway_panic", "1 while the balancer is in panic mode for the service (balancing across every instance)", (r) => (r.rt.panic ? 1 : 0));
  perServiceGauge("roster_gateway_in_flight", "Requests holding a concurrency slot", (r) => r.rt.limiter.inFlight);
  perServiceGauge("roster_gateway_queued", "Requests waiting for a concurrency slot", (r) => r.rt.limiter.queued);
  perServiceGauge("roster_gateway_catalog_revision", "Catalog revision of the last change mirrored for the service", (r) => r.src.revision(r.service));

  // Endpoint state, read once per scrape for the four gauges below.
  new Gauge({
    name: "roster_gateway_endpoints",
    help: "Endpoints of the service, by state (healthy: passing or warning, not ejected, breaker not open; ejected; breaker_open; total)",
    labelNames: ["gateway", "service", "state"],
    registers,
    collect() {
      this.reset();
      const now = nowMs(); // the balancers' clock
      for (const { gateway, service, rt } of rows()) {
        let healthy = 0;
        let ejected = 0;
        let open = 0;
        const eps = rt.balancer.stats(now);
        for (const e of eps) {
          const isEjected = e.ejectedUntil > 0;
          if (isEjected) ejected++;
          if (e.breaker === "open") open++;
          if ((e.status === "passing" || e.status === "warning") && !isEjected && e.breaker !== "open") healthy++;
        }
        this.set({ gateway, service, state: "total" }, eps.length);
        this.set({ gateway, service, state: "healthy" }, healthy);
        this.set({ gateway, service, state: "ejected" }, ejected);
        this.set({ gateway, service, state: "breaker_open" }, open);
      }
    },
  });
  new Gauge({
    name: "roster_gateway_breaker_state",
    help: "Circuit breaker of each endpoint: 0 closed, 1 half-open, 2 open",
    labelNames: ["gateway", "service", "endpoint"],
    registers,
    collect() {
      this.reset();
      const now = nowMs(); // the balancers' clock
      for (const { gateway, service, rt } of rows()) {
        for (const e of rt.balancer.stats(now)) this.set({ gateway, service, endpoint: e.id }, BREAKER_VALUE[e.breaker]);
      }
    },
  });
  new Gauge({
    name: "roster_gateway_stale",
    help: "1 while the gateway's catalog mirror is stale (NATS down or registry silent)",
    labelNames: ["gateway"],
    registers,
    collect() {
      this.reset();
      for (const src of sources.values()) this.set({ gateway: src.name }, src.isStale() ? 1 : 0);
    },
  });
}

/** A Registry of the gateway's own (`metrics: true`). */
export function newMetricsRegistry(): Registry {
  return new Registry();
}
