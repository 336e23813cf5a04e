// The gateway: the front object that wires a catalog follower (the mirror of the services it
// calls, over NATS), one ServiceBalancer and retry/hedge/concurrency state per service, the
// upstream pools (one per instance origin, injected factory), and the request engine
// (adapters/engine.ts) that `request()` and the undici dispatcher both run on. No proxy hop:
// the caller's process talks to the chosen instance directly.
import { EventEmitter } from "node:events";
import { nowMs } from "./adapters/clock.js";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { Dispatcher } from "undici";
import { NAME_PATTERN, NatsAuthError, natsConnectOptions, parseNatsAuth, type CatalogInstance, type NatsAuthInput, type NatsConnectOptions } from "roster-schemas";
import { ServiceBalancer, type BalancerOptionsInput } from "./core/service-balancer.js";
import type { Endpoint, EndpointStats, NoHealthyReasons, Outcome } from "./core/types.js";
import { CatalogFollower, type InstanceChange, type RegistryDegraded, type StaleReason } from "./adapters/mirror.js";
import { ConcurrencyLimiter } from "./core/concurrency.js";
import { HedgePolicy } from "./core/hedge.js";
import { RetryBudget } from "./core/retry-budget.js";
import { backoffDelay } from "./core/backoff.js";
import { childLogger, type Logger } from "./adapters/logger.js";
import { RequestErrors } from "./adapters/request-errors.js";
import { GatewayDispatcher, type FetchDispatcher } from "./adapters/dispatcher.js";
import { PolicyTraffic } from "./adapters/policy-traffic.js";
import { Engine, originOf, type RequestOptions, type ServiceRuntime, type TrafficHooks, type UpstreamPool } from "./adapters/engine.js";
import { defaultPoolFactory, UpstreamPools, type PoolFactory } from "./adapters/pools.js";
import { Tracing, type TracerProviderLike } from "./adapters/tracing.js";
import { parsePolicy, type GatewayPolicy, type GatewayPolicyInput } from "./config.js";
import { GatewayClosedError, InvalidOptionsError, NoHealthyUpstreamError, UnknownServiceError } from "./errors.js";

export { DEADLINE_HEADER } from "./adapters/engine.js";
export type { RequestBody, RequestOptions, RequestPlan, TrafficHooks, UpstreamPool } from "./adapters/engine.js";

/**
 * A prom-client Registry, as far as the gateway's callers need it (kept structural so the
 * package's types do not require prom-client, an optional peer dependency).
 */
export interface MetricsRegistry {
  metrics(): Promise<string>;
  readonly contentType: string;
  getSingleMetric(name: string): unknown;
}

export interface GatewayOptions extends GatewayPolicyInput {
  /** NATS server URL(s) (a string may be comma-separated), or an existing connection (then the gateway does not close it). */
  nats: string | string[] | NatsConnection;
  /**
   * NATS auth and TLS when the gateway dials: user/password, token, nkeySeed(File), credsFile, tls.
   * From the environment: `natsAuth: natsAuthFromEnv(process.env)` (ROSTER_NATS_* variables).
   */
  natsAuth?: NatsAuthInput;
  /** Balancer tuning passed to the core (outlier ejection, breaker, slow start, locality, panic threshold...). */
  balancerOptions?: Omit<BalancerOptionsInput, "balancer" | "zone">;
  /** Any pino-compatible logger; none by default. */
  logger?: Logger;
  /** Injected for tests (jitter, balancer choices). */
  random?: () => number;
  /**
   * Prometheus metrics (`roster_gateway_*`): `true` for a Registry of this gateway's own (see
   * `gateway.metrics`), or the host's prom-client Registry to add them to. Off by default;
   * prom-client (an optional peer dependency) is loaded only when this is set.
   */
  metrics?: MetricsRegistry | boolean;
  /** The `gateway` label of its metrics; gateways sharing a Registry need different names. Default "default". */
  name?: string;
  /**
   * OpenTelemetry: by default a span per request and per try whenever `@opentelemetry/api` is
   * installed and a tracer provider is registered globally; `false` turns it off; a
   * `tracerProvider` is used instead of the global one.
   */
  tracing?: boolean | { tracerProvider?: TracerProviderLike };
  /** Makes the pool of each upstream origin (default: undici's Pool with the `pool` options). */
  poolFactory?: PoolFactory;
  /** Per-service traffic policy hooks (plan, outcome, no instance). @experimental */
  traffic?: TrafficHooks;
}

export interface Picked {
  readonly endpoint: Endpoint;
  readonly panic: boolean;
  /** Report how the call went: an Outcome, or a word (latency measured from the pick). Call it once. */
  done(outcome: Outcome | "success" | "failure" | "cancelled"): void;
}

export interface ServiceStats {
  requests: number;
  /** Requests that returned a response (any status). */
  responses: number;
  tries: number;
  retries: number;
  hedges: number;
  budgetExhausted: number;
  inFlight: number;
  queued: number;
  panic: boolean;
  revision: number;
  endpoints: EndpointStats[];
}

/** The events a Gateway emits, with their arguments. */
export interface GatewayEvents {
  /** The catalog of a service changed. */
  change: [service: string, revision: number];
  /** The mirror became stale (NATS down, registry silent) or fresh again. */
  stale: [stale: boolean, reason?: StaleReason];
  /** The balancer entered or left panic mode for a service. */
  panic: [service: string, panic: boolean];
  /** The registry entered or left its degraded mode. */
  degraded: [degraded: boolean, info?: RegistryDegraded | null];
  /** A request's subset (`wanted`) had no usable instance: another subset of the policy took its share. */
  redistributed: [service: string, wanted: string | undefined, via: "route" | "split"];
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal.reason);
    };
    const t = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });

/**
 * Events (typed in `GatewayEvents`):
 * - `change` (service, revision): the catalog of a service changed.
 * - `stale` (stale: boolean, reason?): the mirror became stale (NATS down, registry silent) or fresh again.
 * - `panic` (service, panic: boolean): the balancer entered or left panic mode for a service.
 * - `degraded` (degraded: boolean, info?: { reason, since }): the registry entered or left its degraded mode.
 */
export class Gateway extends EventEmitter<GatewayEvents> {
  /** An undici Dispatcher for `fetch(url, { dispatcher })` and `undici.request`: the URL's host is the service. */
  readonly dispatcher: GatewayDispatcher & FetchDispatcher;
  /** @internal The gateway-local options (the defaults a service policy overrides). */ readonly options: GatewayPolicy;
  /** @internal */ readonly mirror: CatalogFollower;
  /** @internal */ readonly engine: Engine;
  /** @internal */ readonly pools: UpstreamPools;
  /** @internal */ readonly log: Logger;
  /** @internal */ tracing: Tracing | undefined = undefined;
  /** @internal */ readonly hooks: TrafficHooks | undefined;
  /** @internal Service traffic policies in the engine (adapters/policy-traffic.ts). */ readonly traffic: PolicyTraffic;
  private nc: NatsConnection | null = null;
  private readonly ownsNc: boolean;
  private readonly runtimes = new Map<string, ServiceRuntime>();
  private readonly random: () => number;
  private readonly balancerOptions: BalancerOptionsInput;
  private closed = false;
  private connecting: Promise<void> | null = null;
  /** @internal Requests that ended in an error, by service and code (for the metrics). */
  readonly requestErrors = new RequestErrors();
  private metricsRegistry: MetricsRegistry | undefined;
  private detachMetrics: (() => void) | undefined;
  private readonly closeAc = new AbortController();

  /** Servers, authenticator and TLS when the gateway dials NATS itself. */
  private dialOptions: NatsConnectOptions | undefined;

  private constructor(options: GatewayOptions) {
    super();
    const { nats, natsAuth, balancerOptions, logger, random, metrics: _metrics, name: _name, tracing: _tracing, poolFactory, traffic, ...policyInput } = options;
    this.options = parsePolicy(policyInput);
    if (typeof nats === "string" || Array.isArray(nats)) {
      try {
        this.dialOptions = natsConnectOptions(nats, parseNatsAuth(natsAuth, "natsAuth."), "natsAuth.");
      } catch (err) {
        if (err instanceof NatsAuthError) throw new InvalidOptionsError(err.issues);
        throw err;
      }
    }
    this.log = childLogger(logger, "gateway");
    this.random = random ?? Math.random;
    this.balancerOptions = { ...balancerOptions, balancer: this.options.balancer, zone: this.options.zone };
    try {
      new ServiceBalancer(this.balancerOptions); // fails fast on bad tuning
    } catch (err) {
      throw new InvalidOptionsError([`balancerOptions.${(err as Error).message}`]);
    }
    const p = this.options.pool;
    this.pools = new UpstreamPools(poolFactory ?? defaultPoolFactory, { connections: p.connections, keepAliveTimeout: p.keepAliveTimeout, connect: { timeout: p.connectTimeout } });
    this.engine = new Engine(this);
    this.ownsNc = typeof nats === "string" || Array.isArray(nats);
    this.mirror = new CatalogFollower({
      services: this.options.services,
      snapshotTimeoutMs: this.options.snapshotTimeout,
      snapshotRequestTimeoutMs: this.options.snapshotRequestTimeout,
      lastKnownGoodFile: this.options.lastKnownGoodFile,
      logger,
      random: this.random,
    });
    this.mirror.on("change", (service: string, revision: number, change?: InstanceChange) => {
      this.onCatalogChange(service, change);
      this.emit("change", service, revision);
    });
    this.traffic = new PolicyTraffic(
      this.mirror.policies,
      { balancer: this.options.balancer, tryTimeout: this.options.tryTimeout, deadline: this.options.deadline, deadlineSet: this.options.deadlineSet, maxRetries: this.options.maxRetries },
      this.balancerOptions,
      this.random,
      { redistributed: (service, wanted, via) => this.emit("redistributed", service, wanted, via) },
      traffic,
    );
    this.hooks = this.traffic;
    this.mirror.on("stale", (stale: boolean, reason?: StaleReason) => this.emit("stale", stale, reason));
    this.mirror.on("degraded", (on: boolean, info?: RegistryDegraded) => this.emit("degraded", on, info));
    this.dispatcher = new GatewayDispatcher(this) as GatewayDispatcher & FetchDispatcher;
  }

  /** @internal use createGateway(). */
  static async create(options: GatewayOptions): Promise<Gateway> {
    const gw = new Gateway(options);
    try {
      await gw.loadOptional(options);
    } catch (err) {
      await gw.close();
      throw err;
    }
    if (!gw.ownsNc) {
      gw.nc = options.nats as NatsConnection;
      gw.mirror.attach(gw.nc);
    } else await gw.connectFirst(gw.dialOptions!.servers);
    if (gw.options.services.length > 0) {
      await Promise.allSettled(gw.options.services.map((s) => gw.mirror.waitReady(s)));
    }
    return gw;
  }

  /** Loads what only some hosts want (prom-client, @opentelemetry/api) only when they do. */
  private async loadOptional(options: GatewayOptions): Promise<void> {
    const tracing = options.tracing;
    this.tracing = await Tracing.load(typeof tracing === "object" ? { tracerProvider: tracing.tracerProvider } : { enabled: tracing !== false });
    if (options.metrics) {
      const { attachGatewayMetrics, newMetricsRegistry } = await import("./adapters/metrics.js");
      const registry = options.metrics === true ? newMetricsRegistry() : options.metrics;
      this.metricsRegistry = registry;
      try {
        this.detachMetrics = attachGatewayMetrics(registry as Parameters<typeof attachGatewayMetrics>[0], {
          name: options.name ?? "default",
          runtimes: () => this.runtimes.values(),
          isStale: () => this.mirror.isStale,
          revision: (service) => this.mirror.revision(service),
          errors: this.requestErrors,
          policyCounters: (service) => this.traffic.counters(service),
        });
      } catch (err) {
        throw new InvalidOptionsError([`name: ${(err as Error).message}`]);
      }
    }
  }

  get isStale(): boolean {
    return this.mirror.isStale;
  }

  /** The prom-client Registry holding this gateway's metrics (undefined unless the `metrics` option is set). */
  get metrics(): MetricsRegistry | undefined {
    return this.metricsRegistry;
  }

  get staleReason(): StaleReason | undefined {
    return this.mirror.staleReason;
  }

  /** True while the registry says it is degraded (self-preservation); details in `degradedInfo`. */
  get degraded(): boolean {
    return this.mirror.degraded !== null;
  }

  get degradedInfo(): RegistryDegraded | null {
    return this.mirror.degraded;
  }

  /** Catalog revision of the last change applied for `service` (0 if none). */
  revision(service: string): number {
    return this.mirror.revision(service);
  }

  /** The instances of `service` as the mirror holds them (empty until its snapshot arrived). */
  instances(service: string): readonly CatalogInstance[] {
    return this.mirror.view(service)?.instances ?? [];
  }

  /**
   * What is in force for `service`: the gateway's options overridden by the service's traffic
   * policy (docs/traffic-policy.md), where each value comes from, the live split and the
   * policy's counters (admitted, throttled, rate limited, redistributed, fallbacks).
   */
  policy(service: string): ReturnType<PolicyTraffic["inForce"]> {
    return this.traffic.inForce(service);
  }

  stats(service: string): ServiceStats | undefined {
    const rt = this.runtimes.get(service);
    if (!rt) return undefined;
    return {
      ...rt.counters,
      inFlight: rt.limiter.inFlight,
      queued: rt.limiter.queued,
      panic: rt.panic,
      revision: this.mirror.revision(service),
      endpoints: rt.balancer.stats(nowMs()),
    };
  }

  // -------------------------------------------------------------------------------------
  // NATS

  private async connectFirst(servers: string | string[]): Promise<void> {
    const deadline = Date.now() + this.options.connectTimeout;
    let attempt = 0;
    for (;;) {
      try {
        const nc = await this.dial(servers, Math.max(100, deadline - Date.now()));
        this.useConnection(nc);
        return;
      } catch (err) {
        attempt++;
        if (Date.now() + 50 >= deadline) {
          this.log.warn({ err: (err as Error).message }, "NATS unreachable: routing on the last-known-good catalog, retrying in the background");
          await this.mirror.loadLastKnownGood();
          this.connecting = this.connectInBackground(servers);
          return;
        }
        await new Promise((r) => setTimeout(r, Math.min(deadline - Date.now(), backoffDelay(attempt, this.random, { baseMs: 100, capMs: 1000 }) + 50)));
      }
    }
  }

  private async connectInBackground(servers: string | string[]): Promise<void> {
    let attempt = 0;
    while (!this.closed) {
      try {
        const nc = await this.dial(servers, 2000);
        if (this.closed) {
          await nc.close().catch(() => {});
          return;
        }
        this.useConnection(nc);
        this.log.info({}, "connected to NATS");
        return;
      } catch {
        attempt++;
        await sleep(backoffDelay(attempt, this.random, { baseMs: 200, capMs: 5000 }) + 100, this.closeAc.signal).catch(() => {});
      }
    }
  }

  private dial(servers: string | string[], timeoutMs: number): Promise<NatsConnection> {
    return connect({ ...this.dialOptions, servers, name: "roster-gateway", maxReconnectAttempts: -1, reconnectTimeWait: 250, timeout: Math.min(timeoutMs, 2000) });
  }

  private useConnection(nc: NatsConnection): void {
    this.nc = nc;
    this.mirror.attach(nc);
  }

  // -------------------------------------------------------------------------------------
  // Services, pools (EngineHost)

  /** @internal */
  runtime(service: string): ServiceRuntime {
    let rt = this.runtimes.get(service);
    if (rt) return rt;
    const p = this.options;
    rt = {
      name: service,
      balancer: new ServiceBalancer(this.balancerOptions, this.random),
      budget: new RetryBudget({ ratio: p.retryBudget.ratio, minRetriesPerSecond: p.retryBudget.minPerSecond, windowMs: p.retryBudget.window }),
      limiter: new ConcurrencyLimiter({ maxConcurrent: p.concurrency.limit, maxQueue: p.concurrency.queue }),
      hedge: new HedgePolicy({
        quantile: p.hedge.quantile,
        maxExtraLoad: p.hedge.maxExtraLoad,
        windowMs: p.hedge.window,
        minSamples: p.hedge.minSamples,
        minDelayMs: p.hedge.minDelay,
        maxDelayMs: p.hedge.maxDelay,
      }),
      panic: false,
      routable: false,
      revision: -1,
      origins: new Map(),
      poolOf: new WeakMap(),
      counters: { requests: 0, responses: 0, tries: 0, retries: 0, hedges: 0, budgetExhausted: 0 },
    };
    this.runtimes.set(service, rt);
    const view = this.mirror.view(service);
    if (view) this.setInstances(rt, view.instances, view.known, view.revision);
    return rt;
  }

  /** @internal */
  isClosed(): boolean {
    return this.closed;
  }

  /** @internal The runtime of a service that routes now (fast path), else undefined. */
  routable(service: string): ServiceRuntime | undefined {
    const rt = this.runtimes.get(service);
    return rt !== undefined && rt.routable ? rt : undefined;
  }

  /** @internal Waits (bounded) for the service's catalog and returns its runtime. */
  async ready(service: string, timeoutMs = this.options.snapshotTimeout): Promise<ServiceRuntime> {
    if (this.closed) throw new GatewayClosedError();
    let view = this.mirror.view(service);
    if (!view) {
      if (!NAME_PATTERN.test(service)) throw new InvalidOptionsError([`service: "${service}" is not a valid service name`]);
      view = await this.mirror.waitReady(service, timeoutMs);
    }
    if (!view.known && view.instances.length === 0) throw new UnknownServiceError(service, view.revision);
    return this.runtime(service);
  }

  /** @internal The runtime of a service whose catalog is already mirrored (no wait), or undefined. */
  readyNow(service: string): ServiceRuntime | undefined {
    const rt = this.runtimes.get(service);
    if (rt && rt.routable) return rt;
    const view = this.mirror.view(service);
    if (!view) return undefined;
    if (!view.known && view.instances.length === 0) throw new UnknownServiceError(service, view.revision);
    return this.runtime(service);
  }

  private onCatalogChange(service: string, change: InstanceChange | undefined): void {
    const rt = this.runtimes.get(service);
    if (!rt) return; // made from the mirror's view when first needed
    // One delta on top of what the runtime holds: update that instance, not the whole list.
    if (change && change.prevRevision === rt.revision) return this.updateInstance(rt, change);
    const view = this.mirror.view(service);
    if (view) this.setInstances(rt, view.instances, view.known, view.revision);
  }

  private setInstances(rt: ServiceRuntime, instances: readonly CatalogInstance[], known: boolean, revision: number): void {
    rt.balancer.setInstances(instances, nowMs());
    this.traffic.setInstances(rt.name, instances);
    rt.revision = revision;
    rt.routable = known || instances.length > 0;
    rt.origins = new Map();
    for (const i of instances) {
      const o = originOf(i);
      rt.origins.set(o, (rt.origins.get(o) ?? 0) + 1);
    }
    rt.poolOf = new WeakMap();
    this.prunePools();
  }

  /** What `setInstances` with the whole list would do, for one changed instance (O(1) unless an origin goes away). */
  private updateInstance(rt: ServiceRuntime, change: InstanceChange): void {
    rt.balancer.updateInstance(change.id, change.after, nowMs());
    this.traffic.updateInstance(rt.name, change, () => this.mirror.view(rt.name)?.instances ?? []);
    rt.revision = change.revision;
    rt.routable = true; // a delta applied: the registry knows the service
    const was = change.before && originOf(change.before);
    const now = change.after && originOf(change.after);
    if (was === now) return;
    if (now !== undefined) rt.origins.set(now, (rt.origins.get(now) ?? 0) + 1);
    if (was !== undefined) {
      const left = (rt.origins.get(was) ?? 1) - 1;
      if (left > 0) rt.origins.set(was, left);
      else {
        rt.origins.delete(was);
        this.prunePools();
      }
    }
  }

  /** Removes the upstreams no service lists any more (undici lets their in-flight requests finish). */
  private prunePools(): void {
    const live = new Set<string>();
    for (const rt of this.runtimes.values()) for (const o of rt.origins.keys()) live.add(o);
    let removed = false;
    for (const origin of [...this.pools.origins()]) if (!live.has(origin)) removed = this.pools.removeUpstream(origin) || removed;
    if (removed) for (const rt of this.runtimes.values()) rt.poolOf = new WeakMap();
  }

  /** @internal The pool of an endpoint of `rt`, cached per endpoint object. */
  poolFor(rt: ServiceRuntime, ep: Endpoint): UpstreamPool {
    let pool = rt.poolOf.get(ep);
    if (pool === undefined) {
      pool = this.pools.addUpstream(originOf(ep));
      rt.poolOf.set(ep, pool);
    }
    return pool;
  }

  /** @internal Picks and tracks panic transitions. */
  pickFor(rt: ServiceRuntime, balancer: ServiceBalancer, hashKey: string | undefined, exclude: ReadonlySet<string> | undefined, now = nowMs()) {
    const r = balancer.pick({ now, hashKey, exclude });
    const panic = r.ok ? r.panic : rt.panic;
    if (panic !== rt.panic) {
      rt.panic = panic;
      this.log.warn({ service: rt.name, panic }, panic ? "panic mode: balancing across every instance" : "left panic mode");
      this.emit("panic", rt.name, panic);
    }
    return r;
  }

  /** @internal Full-jitter backoff before retry number `retry`. */
  backoff(retry: number): number {
    return backoffDelay(retry, this.random, { baseMs: this.options.backoff.base, capMs: this.options.backoff.max });
  }

  // -------------------------------------------------------------------------------------
  // pick() for other protocols

  /** Picks an instance for a caller that speaks another protocol; report with `done()`. */
  async pick(service: string, opts: { hashKey?: string; exclude?: Iterable<string> } = {}): Promise<Picked> {
    const rt = await this.ready(service);
    const r = this.pickFor(rt, rt.balancer, opts.hashKey, new Set(opts.exclude ?? []));
    if (!r.ok) throw new NoHealthyUpstreamError(service, this.mirror.revision(service), r.reasons as NoHealthyReasons);
    const ep = r.endpoint;
    const started = nowMs();
    rt.balancer.onStart(ep.id, started);
    let reported = false;
    return {
      endpoint: ep,
      panic: r.panic,
      done: (outcome) => {
        if (reported) return;
        reported = true;
        const now = nowMs();
        const latencyMs = now - started;
        const o: Outcome =
          typeof outcome === "object"
            ? outcome
            : outcome === "failure"
              ? { kind: "failure", reason: "other", latencyMs }
              : { kind: outcome, latencyMs };
        rt.balancer.onResult(ep.id, o, now);
        if (o.kind === "success") rt.hedge.recordLatency(o.latencyMs, now);
        this.hooks?.onOutcome?.(service, ep, o);
      },
    };
  }

  // -------------------------------------------------------------------------------------
  // request()

  /**
   * Sends an HTTP request to an instance of `service`. Resolves with undici's ResponseData
   * once the response headers arrive (consume or dump the body). Retries (idempotent
   * requests, or any request whose connection was refused) go to another instance.
   */
  request(service: string, opts: RequestOptions = {}): Promise<Dispatcher.ResponseData> {
    return this.engine.request(service, opts);
  }

  // -------------------------------------------------------------------------------------

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.closeAc.abort(new GatewayClosedError());
    this.engine.abortAll(new GatewayClosedError());
    this.detachMetrics?.();
    this.traffic.close();
    await this.mirror.close();
    await this.connecting?.catch(() => {});
    // Requests were aborted above, so pools close at once; a body nobody reads is destroyed after 2 s.
    await this.pools.close();
    this.engine.timeouts.clear();
    if (this.ownsNc && this.nc) await this.nc.close().catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Creates a gateway: connects to NATS (or uses the given connection), preloads `services`. */
export function createGateway(options: GatewayOptions): Promise<Gateway> {
  return Gateway.create(options);
}
