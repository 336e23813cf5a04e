// The gateway: a catalog mirror, one ServiceBalancer per service, one undici Pool per
// endpoint, and the request path (per-try timeout, deadline, retries to another instance
// within a budget, concurrency cap, hedging). No proxy hop: the caller's process talks to
// the chosen instance directly.
import { EventEmitter } from "node:events";
import type { Readable } from "node:stream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Pool, type Dispatcher } from "undici";
import { NAME_PATTERN, NatsAuthError, natsConnectOptions, parseNatsAuth, type CatalogInstance, type NatsAuthInput, type NatsConnectOptions } from "roster-schemas";
import { ServiceBalancer, type BalancerOptionsInput } from "./core/service-balancer.js";
import type { Endpoint, EndpointStats, Outcome } from "./core/types.js";
import { CatalogMirror, type RegistryDegraded, type StaleReason } from "./adapters/mirror.js";
import { ConcurrencyLimiter, type Permit } from "./core/concurrency.js";
import { TimeoutQueue, TryTimerEntry } from "./adapters/timeouts.js";
import { HedgePolicy } from "./core/hedge.js";
import { RetryBudget } from "./core/retry-budget.js";
import { backoffDelay } from "./core/backoff.js";
import { isIdempotent, shouldRetry } from "./core/retry-policy.js";
import { classifyError, RETRYABLE_STATUS } from "./adapters/classify.js";
import { childLogger, type Logger } from "./adapters/logger.js";
import { attachGatewayMetrics, RequestErrors } from "./adapters/metrics.js";
import { Registry as MetricsRegistry } from "prom-client";
import { GatewayDispatcher } from "./adapters/dispatcher.js";
import { parsePolicy, type GatewayPolicy, type GatewayPolicyInput } from "./config.js";
import {
  DeadlineExceededError,
  GatewayClosedError,
  InvalidOptionsError,
  NoHealthyUpstreamError,
  QueueFullError,
  RequestAbortedError,
  RetryBudgetExhaustedError,
  TryTimeoutError,
  UnknownServiceError,
  UpstreamError,
} from "./errors.js";

/** Header carrying the remaining deadline (ms) to the upstream, which may pass it on. */
export const DEADLINE_HEADER = "x-roster-deadline-ms";

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
   * `gateway.metrics`), or the host's prom-client Registry to add them to. Off by default.
   */
  metrics?: MetricsRegistry | boolean;
  /** The `gateway` label of its metrics; gateways sharing a Registry need different names. Default "default". */
  name?: string;
}

export type RequestBody = string | Uint8Array | Buffer | Readable | null | undefined;

export interface RequestOptions {
  method?: Dispatcher.HttpMethod;
  path?: string;
  headers?: Record<string, string | string[] | undefined>;
  body?: RequestBody;
  /** Whether the request may be repeated; default from the method (GET, HEAD, OPTIONS, TRACE, PUT, DELETE). */
  idempotent?: boolean;
  /** Per-try timeout (ms); default `tryTimeout`. */
  timeout?: number;
  /** Overall deadline (ms from now); default `deadline`, or the incoming `x-roster-deadline-ms` header when present. */
  deadline?: number;
  /** Retries after the first try; default `maxRetries`. */
  maxRetries?: number;
  /** Consistent-hashing key (ring-hash balancer). */
  hashKey?: string;
  signal?: AbortSignal;
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

/** @internal — what the request path keeps per service. */
export interface ServiceRuntime {
  readonly name: string;
  readonly balancer: ServiceBalancer;
  readonly budget: RetryBudget;
  readonly limiter: ConcurrencyLimiter;
  readonly hedge: HedgePolicy;
  panic: boolean;
  /** The mirror knows the service (or lists instances of it): requests route without a wait. */
  routable: boolean;
  origins: Set<string>;
  /** Pool per endpoint object (rebuilt when the catalog or the pools change). */
  poolOf: Map<Endpoint, Pool>;
  counters: { requests: number; responses: number; tries: number; retries: number; hedges: number; budgetExhausted: number };
}

/** @internal */
export type TryResult =
  | { kind: "response"; res: Dispatcher.ResponseData; ep: Endpoint; h: TryHandle }
  | { kind: "status"; res: Dispatcher.ResponseData; ep: Endpoint; outcome: Outcome; h: TryHandle }
  | { kind: "error"; err: unknown; ep: Endpoint; outcome: Outcome };

class HedgeLost extends Error {
  constructor() {
    super("lost the hedge race");
  }
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

function isReplayable(body: RequestBody): boolean {
  return body === null || body === undefined || typeof body === "string" || body instanceof Uint8Array;
}

async function discard(res: Dispatcher.ResponseData): Promise<void> {
  try {
    await res.body.dump({ limit: 64 * 1024 });
  } catch {
    // already destroyed or reset: nothing to read
  }
}

/**
 * Events:
 * - `change` (service, revision): the catalog of a service changed.
 * - `stale` (stale: boolean, reason?): the mirror became stale (NATS down, registry silent) or fresh again.
 * - `panic` (service, panic: boolean): the balancer entered or left panic mode for a service.
 * - `degraded` (degraded: boolean, info?: { reason, since }): the registry entered or left its degraded mode.
 */
export class Gateway extends EventEmitter {
  readonly dispatcher: GatewayDispatcher;
  /** @internal */ readonly policy: GatewayPolicy;
  /** @internal */ readonly mirror: CatalogMirror;
  private nc: NatsConnection | null = null;
  private readonly ownsNc: boolean;
  private readonly runtimes = new Map<string, ServiceRuntime>();
  private readonly pools = new Map<string, Pool>();
  private readonly log: Logger;
  private readonly random: () => number;
  private readonly balancerOptions: BalancerOptionsInput;
  private closed = false;
  private connecting: Promise<void> | null = null;
  /** @internal Requests that ended in an error, by service and code (for the metrics). */
  readonly requestErrors = new RequestErrors();
  private readonly metricsRegistry: MetricsRegistry | undefined;
  private detachMetrics: (() => void) | undefined;
  private readonly closeAc = new AbortController();
  /** Requests from start until their body closes (for close()): an intrusive list. */
  private activeHead: RequestCtl | undefined = undefined;
  /** @internal Per-try timeouts (this and the dispatcher): one FIFO and one timer per distinct duration. */
  readonly timeouts = new TimeoutQueue();
  private lastDeadlineMs = -1;
  private lastDeadlineStr = "";
  /** `[DEADLINE_HEADER, lastDeadlineStr]`: the headers of a request without its own (undici only reads them). */
  private lastDeadlinePair: string[] = [];

  /** Servers, authenticator and TLS when the gateway dials NATS itself. */
  private dialOptions: NatsConnectOptions | undefined;

  private constructor(options: GatewayOptions) {
    super();
    const { nats, natsAuth, balancerOptions, logger, random, metrics, name, ...policyInput } = options;
    this.policy = parsePolicy(policyInput);
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
    this.balancerOptions = { ...balancerOptions, balancer: this.policy.balancer, zone: this.policy.zone };
    try {
      new ServiceBalancer(this.balancerOptions); // fails fast on bad tuning
    } catch (err) {
      throw new InvalidOptionsError([`balancerOptions.${(err as Error).message}`]);
    }
    this.ownsNc = typeof nats === "string" || Array.isArray(nats);
    this.mirror = new CatalogMirror({
      services: this.policy.services,
      snapshotTimeoutMs: this.policy.snapshotTimeout,
      snapshotRequestTimeoutMs: this.policy.snapshotRequestTimeout,
      lastKnownGoodFile: this.policy.lastKnownGoodFile,
      logger,
      random: this.random,
    });
    this.mirror.on("change", (service: string, revision: number) => {
      this.onCatalogChange(service);
      this.emit("change", service, revision);
    });
    this.mirror.on("stale", (stale: boolean, reason?: StaleReason) => this.emit("stale", stale, reason));
    this.mirror.on("degraded", (on: boolean, info?: RegistryDegraded) => this.emit("degraded", on, info));
    this.dispatcher = new GatewayDispatcher(this);
    if (metrics) {
      this.metricsRegistry = metrics === true ? new MetricsRegistry() : metrics;
      try {
        this.detachMetrics = attachGatewayMetrics(this.metricsRegistry, {
          name: name ?? "default",
          runtimes: () => this.runtimes.values(),
          isStale: () => this.mirror.isStale,
          revision: (service) => this.mirror.revision(service),
          errors: this.requestErrors,
        });
      } catch (err) {
        throw new InvalidOptionsError([`name: ${(err as Error).message}`]);
      }
    }
    if (!this.ownsNc) {
      this.nc = nats as NatsConnection;
      this.mirror.attach(this.nc);
    }
  }

  /** @internal use createGateway(). */
  static async create(options: GatewayOptions): Promise<Gateway> {
    const gw = new Gateway(options);
    if (gw.ownsNc) await gw.connectFirst(gw.dialOptions!.servers);
    if (gw.policy.services.length > 0) {
      await Promise.allSettled(gw.policy.services.map((s) => gw.mirror.waitReady(s)));
    }
    return gw;
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

  stats(service: string): ServiceStats | undefined {
    const rt = this.runtimes.get(service);
    if (!rt) return undefined;
    return {
      ...rt.counters,
      inFlight: rt.limiter.inFlight,
      queued: rt.limiter.queued,
      panic: rt.panic,
      revision: this.mirror.revision(service),
      endpoints: rt.balancer.stats(Date.now()),
    };
  }

  // -------------------------------------------------------------------------------------
  // NATS

  private async connectFirst(servers: string | string[]): Promise<void> {
    const deadline = Date.now() + this.policy.connectTimeout;
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
  // Services, pools

  /** @internal */
  runtime(service: string): ServiceRuntime {
    let rt = this.runtimes.get(service);
    if (rt) return rt;
    const p = this.policy;
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
      origins: new Set(),
      poolOf: new Map(),
      counters: { requests: 0, responses: 0, tries: 0, retries: 0, hedges: 0, budgetExhausted: 0 },
    };
    this.runtimes.set(service, rt);
    const view = this.mirror.view(service);
    if (view) this.setInstances(rt, view.instances, view.known);
    return rt;
  }

  /** @internal Waits (bounded) for the service's catalog and returns its runtime. */
  async ready(service: string, timeoutMs = this.policy.snapshotTimeout): Promise<ServiceRuntime> {
    if (this.closed) throw new GatewayClosedError();
    let view = this.mirror.view(service);
    if (!view) {
      if (!NAME_PATTERN.test(service)) throw new InvalidOptionsError([`service: "${service}" is not a valid service name`]);
      view = await this.mirror.waitReady(service, timeoutMs);
    }
    if (!view.known && view.instances.length === 0) throw new UnknownServiceError(service, view.revision);
    return this.runtime(service);
  }

  private onCatalogChange(service: string): void {
    const rt = this.runtimes.get(service);
    const view = this.mirror.view(service);
    if (!rt || !view) return;
    this.setInstances(rt, view.instances, view.known);
  }

  private setInstances(rt: ServiceRuntime, instances: readonly CatalogInstance[], known: boolean): void {
    rt.balancer.setInstances(instances, Date.now());
    rt.routable = known || instances.length > 0;
    rt.origins = new Set(instances.map((i) => originOf(i)));
    rt.poolOf.clear();
    this.prunePools();
  }

  /** Closes the pools of endpoints no service lists any more (undici lets their in-flight requests finish). */
  private prunePools(): void {
    const live = new Set<string>();
    for (const rt of this.runtimes.values()) for (const o of rt.origins) live.add(o);
    for (const [origin, pool] of this.pools) {
      if (!live.has(origin)) {
        this.pools.delete(origin);
        for (const rt of this.runtimes.values()) rt.poolOf.clear();
        pool.close().catch(() => {});
      }
    }
  }

  /** The pool of an endpoint of `rt`, cached per endpoint object. */
  private poolFor(rt: ServiceRuntime, ep: Endpoint): Pool {
    let pool = rt.poolOf.get(ep);
    if (pool === undefined) {
      pool = this.pool(ep);
      rt.poolOf.set(ep, pool);
    }
    return pool;
  }

  /** @internal */
  pool(ep: Endpoint): Pool {
    const origin = originOf(ep);
    let pool = this.pools.get(origin);
    if (!pool) {
      const p = this.policy.pool;
      pool = new Pool(origin, { connections: p.connections, keepAliveTimeout: p.keepAliveTimeout, connect: { timeout: p.connectTimeout } });
      this.pools.set(origin, pool);
    }
    return pool;
  }

  /** @internal Picks and tracks panic transitions. */
  pickFor(rt: ServiceRuntime, hashKey: string | undefined, exclude: ReadonlySet<string> | undefined, now = Date.now()) {
    const r = rt.balancer.pick({ now, hashKey, exclude });
    const panic = r.ok ? r.panic : rt.panic;
    if (panic !== rt.panic) {
      rt.panic = panic;
      this.log.warn({ service: rt.name, panic }, panic ? "panic mode: balancing across every instance" : "left panic mode");
      this.emit("panic", rt.name, panic);
    }
    return r;
  }

  // -------------------------------------------------------------------------------------
  // pick() for other protocols

  /** Picks an instance for a caller that speaks another protocol; report with `done()`. */
  async pick(service: string, opts: { hashKey?: string; exclude?: Iterable<string> } = {}): Promise<Picked> {
    const rt = await this.ready(service);
    const r = this.pickFor(rt, opts.hashKey, new Set(opts.exclude ?? []));
    if (!r.ok) throw new NoHealthyUpstreamError(service, this.mirror.revision(service), r.reasons);
    const ep = r.endpoint;
    const started = performance.now();
    rt.balancer.onStart(ep.id, Date.now());
    let reported = false;
    return {
      endpoint: ep,
      panic: r.panic,
      done: (outcome) => {
        if (reported) return;
        reported = true;
        const latencyMs = performance.now() - started;
        const o: Outcome =
          typeof outcome === "object"
            ? outcome
            : outcome === "failure"
              ? { kind: "failure", reason: "other", latencyMs }
              : { kind: outcome, latencyMs };
        rt.balancer.onResult(ep.id, o, Date.now());
        if (o.kind === "success") rt.hedge.recordLatency(o.latencyMs, Date.now());
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
    if (this.closed) return Promise.reject(new GatewayClosedError());
    let ctl: RequestCtl | undefined;
    try {
      const headerDeadline = opts.headers ? Number(opts.headers[DEADLINE_HEADER]) : NaN;
      const deadlineMs = opts.deadline ?? (headerDeadline > 0 && Number.isFinite(headerDeadline) ? headerDeadline : this.policy.deadline);
      ctl = new RequestCtl(this, service, opts, deadlineMs);
      const rt = this.runtimes.get(service);
      if (rt !== undefined && rt.routable && !ctl.aborted && rt.limiter.tryTake()) {
        ctl.slot = rt.limiter;
        this.prepare(ctl, rt);
        // Fast path: no async function, one promise; the first try's callback settles it.
        const fast = ctl;
        if (!fast.hedging) return new Promise<Dispatcher.ResponseData>((resolve, reject) => this.firstTry(fast, resolve, reject));
      }
    } catch (err) {
      // Bad options from an untyped caller (a method that is not a string...): a rejection, never a throw.
      ctl?.finish();
      this.requestErrors.add(service, err);
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return this.requestSlow(ctl);
  }

  /** Waits for the catalog and a concurrency slot when needed, then runs the tries. */
  private async requestSlow(ctl: RequestCtl): Promise<Dispatcher.ResponseData> {
    const { service } = ctl;
    try {
      if (!ctl.rt) {
        const rt = this.readyNow(service) ?? (await ctl.race(this.ready(service, Math.min(this.policy.snapshotTimeout, ctl.deadlineMs))));
        if (rt.limiter.tryTake()) ctl.slot = rt.limiter;
        else {
          const wait = ctl.waitSignal();
          try {
            const acquired = await rt.limiter.acquire(wait.signal);
            if (!acquired.ok) {
              if (acquired.reason === "queue-full") throw new QueueFullError(service, rt.limiter.options.maxConcurrent, rt.limiter.options.maxQueue);
              throw ctl.reason;
            }
            ctl.permit = acquired.permit;
          } finally {
            wait.dispose();
          }
        }
        this.prepare(ctl, rt);
      }
      const res = await this.execute(ctl, undefined);
      ctl.holdUntilClosed(res);
      return res;
    } catch (err) {
      ctl.finish();
      this.requestErrors.add(service, err);
      throw err;
    }
  }

  /** Per-request settings, and the request counted (slot held). */
  private prepare(ctl: RequestCtl, rt: ServiceRuntime): void {
    const opts = ctl.opts;
    const method = opts.method ?? "GET";
    const replayable = isReplayable(opts.body);
    ctl.rt = rt;
    ctl.method = method;
    ctl.idempotent = isIdempotent(method, opts.idempotent);
    ctl.maxRetries = replayable ? (opts.maxRetries ?? this.policy.maxRetries) : 0;
    ctl.hedging = this.policy.hedge.enabled && ctl.idempotent && replayable;
    ctl.tryTimeout = opts.timeout ?? this.policy.tryTimeout;
    rt.counters.requests++;
    rt.budget.recordRequest(ctl.started);
    if (ctl.hedging) rt.hedge.recordRequest(ctl.started);
  }

  /** Fast path: the first try, started synchronously; retries continue in `execute`. */
  private firstTry(ctl: RequestCtl, resolve: (res: Dispatcher.ResponseData) => void, reject: (err: unknown) => void): void {
    ctl.resolve = resolve;
    ctl.reject = reject;
    try {
      const rt = ctl.rt!;
      const picked = this.pickFor(rt, ctl.opts.hashKey, undefined, ctl.started);
      if (!picked.ok) throw new NoHealthyUpstreamError(rt.name, this.mirror.revision(rt.name), picked.reasons);
      ctl.tries++;
      rt.counters.tries++;
      this.startTry(new TryHandle(ctl, picked.endpoint, undefined), ctl.started);
    } catch (err) {
      ctl.finish();
      this.requestErrors.add(ctl.service, err);
      reject(err);
    }
  }

  /** @internal The fast path's first try is over. */
  firstTryDone(ctl: RequestCtl, result: TryResult): void {
    if (result.kind === "response") {
      ctl.holdUntilClosed(result.res);
      ctl.resolve!(result.res);
      return;
    }
    this.execute(ctl, result).then(
      (res) => {
        ctl.holdUntilClosed(res);
        ctl.resolve!(res);
      },
      (err: unknown) => {
        ctl.finish();
        this.requestErrors.add(ctl.service, err);
        ctl.reject!(err);
      },
    );
  }

  /** @internal */
  trackActive(ctl: RequestCtl): void {
    ctl.nextActive = this.activeHead;
    if (this.activeHead) this.activeHead.prevActive = ctl;
    this.activeHead = ctl;
  }

  /** @internal */
  untrackActive(ctl: RequestCtl): void {
    const { prevActive: prev, nextActive: next } = ctl;
    if (prev) prev.nextActive = next;
    else if (this.activeHead === ctl) this.activeHead = next;
    else return; // not tracked
    if (next) next.prevActive = prev;
    ctl.prevActive = ctl.nextActive = undefined;
  }

  /** The runtime of a service whose catalog is already mirrored (no wait), or undefined. */
  private readyNow(service: string): ServiceRuntime | undefined {
    const rt = this.runtimes.get(service);
    if (rt && rt.routable) return rt;
    const view = this.mirror.view(service);
    if (!view) return undefined;
    if (!view.known && view.instances.length === 0) throw new UnknownServiceError(service, view.revision);
    return this.runtime(service);
  }

  /** The tries of a prepared request; `first` is the result of a try already made (fast path). */
  private async execute(ctl: RequestCtl, first: TryResult | undefined): Promise<Dispatcher.ResponseData> {
    const rt = ctl.rt!;
    const opts = ctl.opts;
    let exclude: Set<string> | undefined;
    let last: TryResult | undefined;
    for (;;) {
      let result: TryResult;
      if (first) {
        result = first;
        first = undefined;
        exclude = new Set([result.ep.id]);
      } else {
        const picked = this.pickFor(rt, opts.hashKey, exclude);
        if (!picked.ok) {
          if (last) return this.finish(rt, last, ctl.tries);
          throw new NoHealthyUpstreamError(rt.name, this.mirror.revision(rt.name), picked.reasons);
        }
        exclude ??= new Set<string>();
        exclude.add(picked.endpoint.id);
        ctl.tries++;
        rt.counters.tries++;
        result = ctl.hedging ? await this.hedged(ctl, picked.endpoint, exclude) : await this.runTry(new TryHandle(ctl, picked.endpoint, undefined));
      }
      if (result.kind === "response") return result.res;
      last = result;
      ctl.last = result.kind === "error" ? result.err : new Error(`status ${result.res.statusCode} from ${result.ep.id}`);
      if (ctl.aborted) {
        if (result.kind === "status") await this.dropStatus(ctl, result);
        throw ctl.reason;
      }
      if (!shouldRetry(result.outcome, ctl.idempotent) || ctl.tries > ctl.maxRetries) return this.finish(rt, result, ctl.tries);
      if (!rt.budget.trySpend(Date.now())) {
        rt.counters.budgetExhausted++;
        if (result.kind === "status") return this.finish(rt, result, ctl.tries);
        throw new RetryBudgetExhaustedError(rt.name, ctl.tries, { cause: result.err });
      }
      rt.counters.retries++;
      if (result.kind === "status") await this.dropStatus(ctl, result);
      await ctl.sleep(this.backoff(ctl.tries));
    }
  }

  /** Reads and discards the body of a retryable status that is not returned. */
  private async dropStatus(ctl: RequestCtl, result: Extract<TryResult, { kind: "status" }>): Promise<void> {
    await discard(result.res);
    ctl.deleteLive(result.h);
  }

  /** The last try's verdict when no retry happens: a response is returned, an error thrown. */
  private finish(rt: ServiceRuntime, result: TryResult, tries: number): Dispatcher.ResponseData {
    if (result.kind !== "error") return result.res;
    if (result.err instanceof TryTimeoutError) throw result.err;
    const reason = result.outcome.kind === "failure" ? result.outcome.reason : result.outcome.kind;
    throw new UpstreamError(rt.name, result.ep.id, reason, tries, { cause: result.err });
  }

  /** The value of the deadline header for `remaining` ms (the last string is reused). */
  private deadlineHeader(remaining: number): string {
    const ms = Math.max(1, Math.floor(remaining));
    if (ms !== this.lastDeadlineMs) {
      this.lastDeadlineMs = ms;
      this.lastDeadlineStr = String(ms);
      this.lastDeadlinePair = [DEADLINE_HEADER, this.lastDeadlineStr];
    }
    return this.lastDeadlineStr;
  }

  /** One try as a promise that never rejects. */
  private runTry(h: TryHandle): Promise<TryResult> {
    return new Promise<TryResult>((resolve) => {
      h.settle = resolve;
      this.startTry(h, Date.now());
    });
  }

  /**
   * Starts one try against `h.ep` (`now`: Date.now() or the request's start); its result
   * goes to `h.settle`, or to the fast path when unset. `h` stays live in its request while
   * the response is open.
   */
  private startTry(h: TryHandle, now: number): void {
    const ctl = h.ctl;
    const rt = ctl.rt!;
    const opts = ctl.opts;
    ctl.addLive(h);
    const remaining = ctl.deadlineMs - (now - ctl.started);
    h.deadlineBound = remaining <= ctl.tryTimeout;
    h.timeoutMs = Math.max(1, Math.min(ctl.tryTimeout, remaining));
    h.t0 = performance.now();
    rt.balancer.onStart(h.ep.id, now);
    if (ctl.aborted) return h.abort(ctl.reason); // settles the try at once (cancelled); nothing is sent
    this.timeouts.add(h, h.timeoutMs, h.t0);
    let headers: Record<string, string | string[]> | string[];
    if (opts.headers) {
      const h: Record<string, string | string[]> = {};
      for (const k in opts.headers) {
        const v = opts.headers[k];
        if (v !== undefined) h[k] = v;
      }
      h[DEADLINE_HEADER] = this.deadlineHeader(remaining);
      headers = h;
    } else {
      this.deadlineHeader(remaining);
      headers = this.lastDeadlinePair; // shared: undici copies headers into its own request
    }
    try {
      this.poolFor(rt, h.ep).request(
        {
          path: opts.path ?? "/",
          method: ctl.method as Dispatcher.HttpMethod,
          headers,
          body: (opts.body ?? null) as Dispatcher.RequestOptions["body"],
          signal: h as unknown as EventEmitter,
        },
        h.callback,
      );
    } catch (err) {
      // undici reports request errors through the callback; this is a pool that could not be made.
      this.tryDone(h, err instanceof Error ? err : new Error(String(err)), undefined);
    }
  }

  /** @internal undici's answer to a try: bookkeeping, then the result to whoever waits. */
  tryDone(h: TryHandle, err: Error | null, res: Dispatcher.ResponseData | undefined): void {
    if (h.over) {
      // undici's late answer to a try the gateway settled itself (timeout, deadline, abort):
      // ignored; a response's body is read off or destroyed so its connection is not held.
      if (res !== undefined) void discard(res);
      return;
    }
    h.over = true;
    this.timeouts.remove(h);
    const ctl = h.ctl;
    const rt = ctl.rt!;
    const ep = h.ep;
    const latencyMs = performance.now() - h.t0;
    const now = Date.now();
    let result: TryResult;
    if (err === null && res !== undefined) {
      const status = res.statusCode;
      if (RETRYABLE_STATUS.has(status)) {
        const outcome: Outcome = { kind: "failure", reason: "status", statusCode: status, latencyMs };
        rt.balancer.onResult(ep.id, outcome, now);
        result = { kind: "status", res, ep, outcome, h };
      } else {
        if (status >= 500) rt.balancer.onResult(ep.id, { kind: "failure", reason: "status", statusCode: status, latencyMs }, now);
        else {
          rt.balancer.onResult(ep.id, { kind: "success", latencyMs }, now);
          if (this.policy.hedge.enabled) rt.hedge.recordLatency(latencyMs, now);
        }
        if (h.settle === undefined) {
          // The fast path's first try answered: the request is done.
          ctl.holdUntilClosed(res);
          ctl.resolve!(res);
          return;
        }
        result = { kind: "response", res, ep, h };
      }
    } else {
      ctl.deleteLive(h);
      const why: unknown = h.aborted ? h.reason : undefined;
      let outcome: Outcome;
      let error: unknown = err;
      if (why instanceof TryTimeoutError) {
        outcome = { kind: "failure", reason: "timeout", latencyMs };
        error = why;
      } else if (why !== undefined) {
        outcome = { kind: "cancelled", latencyMs };
        error = why;
      } else {
        outcome = { kind: "failure", reason: classifyError(err), latencyMs };
      }
      rt.balancer.onResult(ep.id, outcome, now);
      if (outcome.kind === "failure") this.log.debug({ service: rt.name, endpoint: ep.id, reason: outcome.reason, err: err?.message }, "try failed");
      result = { kind: "error", err: error, ep, outcome };
    }
    if (h.settle) h.settle(result);
    else this.firstTryDone(ctl, result);
  }

  /** A try, plus a second one to another instance if the first is slower than the observed p95. */
  private async hedged(ctl: RequestCtl, ep: Endpoint, exclude: Set<string>): Promise<TryResult> {
    const rt = ctl.rt!;
    const h1 = new TryHandle(ctl, ep, undefined);
    const p1 = this.runTry(h1);
    const delay = rt.hedge.hedgeDelayMs(Date.now());
    if (delay === undefined) return p1; // not enough samples yet
    let timer: ReturnType<typeof setTimeout> | undefined;
    const fire = new Promise<"hedge">((r) => (timer = setTimeout(() => r("hedge"), delay)));
    const first = await Promise.race([p1, fire]);
    clearTimeout(timer);
    if (first !== "hedge") return first;
    if (ctl.aborted) return p1;
    const permit = rt.limiter.tryAcquire();
    if (!permit) return p1;
    const picked = this.pickFor(rt, ctl.opts.hashKey, exclude);
    if (!picked.ok || exclude.has(picked.endpoint.id) || !rt.hedge.shouldHedge(Date.now())) {
      permit.release();
      return p1;
    }
    exclude.add(picked.endpoint.id);
    rt.counters.hedges++;
    rt.counters.tries++;
    const h2 = new TryHandle(ctl, picked.endpoint, undefined);
    const p2 = this.runTry(h2);
    void p2.finally(() => permit.release());
    return new Promise<TryResult>((resolve) => {
      let settled = false;
      const failures: TryResult[] = [];
      const lose = (r: TryResult): void => {
        if (r.kind !== "error") {
          ctl.deleteLive(r.h);
          (r.res.body as unknown as Readable).destroy();
        }
      };
      const on = (r: TryResult, other: TryHandle): void => {
        if (settled) return lose(r);
        if (r.kind === "response") {
          settled = true;
          ctl.deleteLive(other);
          other.abort(new HedgeLost());
          for (const f of failures) lose(f);
          return resolve(r);
        }
        failures.push(r);
        if (failures.length === 2) {
          settled = true;
          lose(failures[0]!);
          resolve(failures[1]!);
        }
      };
      void p1.then((r) => on(r, h2));
      void p2.then((r) => on(r, h1));
    });
  }

  /** @internal Full-jitter backoff before retry number `retry`. */
  backoff(retry: number): number {
    return backoffDelay(retry, this.random, { baseMs: this.policy.backoff.base, capMs: this.policy.backoff.max });
  }

  // -------------------------------------------------------------------------------------

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.closeAc.abort(new GatewayClosedError());
    const active: RequestCtl[] = [];
    for (let c = this.activeHead; c; c = c.nextActive) active.push(c);
    for (const ctl of active) ctl.abort(new GatewayClosedError());
    this.detachMetrics?.();
    await this.mirror.close();
    await this.connecting?.catch(() => {});
    // Requests were aborted above, so pools close at once; a body nobody reads is destroyed after 2 s.
    await Promise.allSettled(
      [...this.pools.values()].map(async (p) => {
        const timer = setTimeout(() => void p.destroy().catch(() => {}), 2000);
        await p.close().catch(() => {});
        clearTimeout(timer);
      }),
    );
    this.pools.clear();
    this.timeouts.clear();
    if (this.ownsNc && this.nc) await this.nc.close().catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * One try: the abort source undici listens to (an EventEmitter-like handle, not an
 * AbortController) and the entry of the gateway's shared timeout queue.
 */
class TryHandle extends TryTimerEntry {
  timeoutMs = 0;
  /** performance.now() at the start. */
  t0 = 0;
  /** The try's result is out (undici answered, or the gateway settled it on an abort): later answers are ignored. */
  over = false;
  /** undici's callback. */
  readonly callback = (err: Error | null, res?: Dispatcher.ResponseData): void => this.ctl.gw.tryDone(this, err, res);

  constructor(
    readonly ctl: RequestCtl,
    readonly ep: Endpoint,
    /** Who waits for the result (a runTry promise); unset: the fast path's first try. */
    public settle: ((r: TryResult) => void) | undefined,
  ) {
    super();
  }

  deadlineLeft(): number {
    return this.ctl.remaining();
  }

  onTimeout(): void {
    if (this.deadlineBound) this.ctl.abort(this.ctl.deadlineError());
    else this.abort(new TryTimeoutError(this.ctl.service, this.ep.id, this.timeoutMs));
  }

  /**
   * Aborts undici's request, and settles the try at once unless its result is already out.
   * undici settles an aborted request only once it is dispatched: one still waiting in the
   * Pool for a connection (every connection busy, or connects hanging behind a hung
   * instance's full accept queue) just records the reason until then. So the timeout, the
   * deadline, the caller's abort and close() must not wait for undici's callback: the try is
   * reported and freed here, undici drops the request when it gets to it, and its late
   * callback finds `over` set.
   */
  override abort(reason: unknown): void {
    if (this.aborted) return;
    super.abort(reason);
    if (!this.over) this.ctl.gw.tryDone(this, reason instanceof Error ? reason : new Error(String(reason)), undefined);
  }
}

const kCtl = Symbol("roster.requestCtl");

/** 'close' listener of a returned body (shared: the request is found on the body). */
function onReturnedBodyClose(this: Readable): void {
  const self = this as unknown as Record<symbol, RequestCtl | undefined>;
  const ctl = self[kCtl];
  if (ctl) {
    self[kCtl] = undefined; // a response kept by the caller does not keep its request alive
    ctl.finish();
  }
}

/**
 * One request's control: what can end it (the caller's signal, the deadline, close()) reaches
 * the tries in flight (`live`) and any wait, without an AbortController or a timer per
 * request on the fast path. Tracked by the gateway (for close()) until `finish()`.
 */
class RequestCtl {
  readonly started = Date.now();
  tries = 0;
  last: unknown;
  reason: unknown = undefined;
  /** The concurrency slot held (taken with tryTake) or the permit (after queueing). */
  slot: ConcurrencyLimiter | undefined = undefined;
  permit: Permit | undefined = undefined;
  /** @internal links of the gateway's list of active requests. */
  prevActive: RequestCtl | undefined = undefined;
  nextActive: RequestCtl | undefined = undefined;
  /** Tries in flight, and the winning try while its response body is open (the first one inline). */
  private live1: TryHandle | undefined = undefined;
  private liveMore: Set<TryHandle> | undefined = undefined;
  private wakers: Set<() => void> | undefined = undefined;
  private onCallerAbort: (() => void) | undefined = undefined;
  private finished = false;

  /** Set by prepare() once the service is routable and a slot is held. */
  rt: ServiceRuntime | undefined = undefined;
  method = "GET";
  idempotent = true;
  maxRetries = 0;
  hedging = false;
  tryTimeout = 0;
  /** The fast path's promise. */
  resolve: ((res: Dispatcher.ResponseData) => void) | undefined = undefined;
  reject: ((err: unknown) => void) | undefined = undefined;

  constructor(
    readonly gw: Gateway,
    readonly service: string,
    readonly opts: RequestOptions,
    readonly deadlineMs: number,
  ) {
    gw.trackActive(this);
    const signal = opts.signal;
    if (signal) {
      const onCallerAbort = (): void => this.abort(new RequestAbortedError(service, { cause: signal.reason }));
      if (signal.aborted) onCallerAbort();
      else {
        this.onCallerAbort = onCallerAbort;
        signal.addEventListener("abort", onCallerAbort, { once: true });
      }
    }
  }

  get aborted(): boolean {
    return this.reason !== undefined;
  }

  remaining(): number {
    return this.deadlineMs - (Date.now() - this.started);
  }

  deadlineError(): DeadlineExceededError {
    return new DeadlineExceededError(this.service, this.deadlineMs, this.tries, { cause: this.last });
  }

  addLive(h: TryHandle): void {
    if (this.live1 === undefined) this.live1 = h;
    else (this.liveMore ??= new Set()).add(h);
  }

  deleteLive(h: TryHandle): void {
    if (this.live1 === h) this.live1 = undefined;
    else this.liveMore?.delete(h);
  }

  /** The request is over once `res`'s body closes (read, dumped or destroyed). */
  holdUntilClosed(res: Dispatcher.ResponseData): void {
    this.rt!.counters.responses++; // every returned response passes here once
    const body = res.body as unknown as Readable;
    if (body.destroyed || body.closed) return this.finish();
    (body as unknown as Record<symbol, RequestCtl>)[kCtl] = this;
    body.on("close", onReturnedBodyClose); // autoDestroy: emitted after end, error or destroy
  }

  /** Releases the slot, forgets the tries and the caller's signal; idempotent. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.gw.untrackActive(this);
    if (this.slot) this.slot.give();
    else this.permit?.release();
    this.live1 = undefined;
    this.liveMore = undefined;
    if (this.onCallerAbort) this.opts.signal!.removeEventListener("abort", this.onCallerAbort);
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.reason = reason;
    if (this.live1) this.live1.abort(reason);
    if (this.liveMore) for (const h of [...this.liveMore]) h.abort(reason);
    if (this.wakers) for (const w of [...this.wakers]) w();
  }

  /** Waits `ms`; rejects with the reason when aborted first, or at the deadline. */
  sleep(ms: number): Promise<void> {
    if (this.aborted) return Promise.reject(this.reason);
    const rem = this.remaining();
    const atDeadline = ms >= rem;
    const wakers = (this.wakers ??= new Set());
    return new Promise<void>((resolve, reject) => {
      const w = (): void => {
        clearTimeout(t);
        wakers.delete(w);
        reject(this.reason);
      };
      const t = setTimeout(() => {
        wakers.delete(w);
        if (atDeadline) {
          this.abort(this.deadlineError());
          reject(this.reason);
        } else resolve();
      }, Math.max(0, Math.min(ms, rem)));
      wakers.add(w);
    });
  }

  /** Rejects with the reason when aborted (or at the deadline) before `p` settles. */
  race<T>(p: Promise<T>): Promise<T> {
    const wait = this.waitSignal();
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => reject(this.reason);
      wait.signal.addEventListener("abort", onAbort, { once: true });
      p.then(resolve, reject).finally(() => wait.dispose());
    });
  }

  /** A signal for waits that take one (the concurrency queue), with a deadline timer; dispose it after. */
  waitSignal(): { signal: AbortSignal; dispose: () => void } {
    const ac = new AbortController();
    if (this.aborted) {
      ac.abort(this.reason);
      return { signal: ac.signal, dispose: () => {} };
    }
    const w = (): void => ac.abort(this.reason);
    const wakers = (this.wakers ??= new Set());
    wakers.add(w);
    const timer = setTimeout(() => this.abort(this.deadlineError()), Math.max(0, this.remaining()));
    return {
      signal: ac.signal,
      dispose: () => {
        clearTimeout(timer);
        wakers.delete(w);
      },
    };
  }
}

function originOf(i: { address: string; port: number }): string {
  const host = i.address.includes(":") && !i.address.startsWith("[") ? `[${i.address}]` : i.address;
  return `http://${host}:${i.port}`;
}

/** Creates a gateway: connects to NATS (or uses the given connection), preloads `services`. */
export function createGateway(options: GatewayOptions): Promise<Gateway> {
  return Gateway.create(options);
}
