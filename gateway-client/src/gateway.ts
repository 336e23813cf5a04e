// The gateway: a catalog mirror, one ServiceBalancer per service, one undici Pool per
// endpoint, and the request path (per-try timeout, deadline, retries to another instance
// within a budget, concurrency cap, hedging). No proxy hop: the caller's process talks to
// the chosen instance directly.
import { EventEmitter } from "node:events";
import type { Readable } from "node:stream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Pool, type Dispatcher } from "undici";
import { NAME_PATTERN, type CatalogInstance } from "@roster/schemas";
import { ServiceBalancer, type BalancerOptionsInput } from "./core/service-balancer.js";
import type { Endpoint, EndpointStats, Outcome } from "./core/types.js";
import { CatalogMirror, type StaleReason } from "./adapters/mirror.js";
import { ConcurrencyLimiter, type Permit } from "./core/concurrency.js";
import { HedgePolicy } from "./core/hedge.js";
import { RetryBudget } from "./core/retry-budget.js";
import { backoffDelay } from "./core/backoff.js";
import { isIdempotent, shouldRetry } from "./core/retry-policy.js";
import { classifyError, RETRYABLE_STATUS } from "./adapters/classify.js";
import { childLogger, type Logger } from "./adapters/logger.js";
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
  /** A NATS server URL (or list), or an existing connection (then the gateway does not close it). */
  nats: string | string[] | NatsConnection;
  /** Balancer tuning passed to the core (outlier ejection, breaker, slow start, locality, panic threshold...). */
  balancerOptions?: Omit<BalancerOptionsInput, "balancer" | "zone">;
  /** Any pino-compatible logger; none by default. */
  logger?: Logger;
  /** Injected for tests (jitter, balancer choices). */
  random?: () => number;
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
  origins: Set<string>;
  counters: { requests: number; tries: number; retries: number; hedges: number; budgetExhausted: number };
}

/** @internal */
export type TryResult =
  | { kind: "response"; res: Dispatcher.ResponseData; ep: Endpoint; ac: AbortController }
  | { kind: "status"; res: Dispatcher.ResponseData; ep: Endpoint; outcome: Outcome; ac: AbortController }
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

function onBodyClosed(res: Dispatcher.ResponseData, fn: () => void): void {
  const body = res.body as unknown as Readable;
  if (body.destroyed || body.closed) return fn();
  body.once("close", fn); // autoDestroy: emitted after end, error or destroy
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
  private readonly closeAc = new AbortController();
  private readonly active = new Set<RequestCtl>();

  private constructor(options: GatewayOptions) {
    super();
    const { nats, balancerOptions, logger, random, ...policyInput } = options;
    this.policy = parsePolicy(policyInput);
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
      lastKnownGoodFile: this.policy.lastKnownGoodFile,
      logger,
      random: this.random,
    });
    this.mirror.on("change", (service: string, revision: number) => {
      this.onCatalogChange(service);
      this.emit("change", service, revision);
    });
    this.mirror.on("stale", (stale: boolean, reason?: StaleReason) => this.emit("stale", stale, reason));
    this.dispatcher = new GatewayDispatcher(this);
    if (!this.ownsNc) {
      this.nc = nats as NatsConnection;
      this.mirror.attach(this.nc);
    }
  }

  /** @internal use createGateway(). */
  static async create(options: GatewayOptions): Promise<Gateway> {
    const gw = new Gateway(options);
    if (gw.ownsNc) await gw.connectFirst(options.nats as string | string[]);
    if (gw.policy.services.length > 0) {
      await Promise.allSettled(gw.policy.services.map((s) => gw.mirror.waitReady(s)));
    }
    return gw;
  }

  get isStale(): boolean {
    return this.mirror.isStale;
  }

  get staleReason(): StaleReason | undefined {
    return this.mirror.staleReason;
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
    return connect({ servers, name: "roster-gateway", maxReconnectAttempts: -1, reconnectTimeWait: 250, timeout: Math.min(timeoutMs, 2000) });
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
      origins: new Set(),
      counters: { requests: 0, tries: 0, retries: 0, hedges: 0, budgetExhausted: 0 },
    };
    this.runtimes.set(service, rt);
    const view = this.mirror.view(service);
    if (view) this.setInstances(rt, view.instances);
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
    this.setInstances(rt, view.instances);
  }

  private setInstances(rt: ServiceRuntime, instances: readonly CatalogInstance[]): void {
    rt.balancer.setInstances(instances, Date.now());
    rt.origins = new Set(instances.map((i) => originOf(i)));
    this.prunePools();
  }

  /** Closes the pools of endpoints no service lists any more (undici lets their in-flight requests finish). */
  private prunePools(): void {
    const live = new Set<string>();
    for (const rt of this.runtimes.values()) for (const o of rt.origins) live.add(o);
    for (const [origin, pool] of this.pools) {
      if (!live.has(origin)) {
        this.pools.delete(origin);
        pool.close().catch(() => {});
      }
    }
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
  pickFor(rt: ServiceRuntime, hashKey: string | undefined, exclude: ReadonlySet<string>) {
    const r = rt.balancer.pick({ now: Date.now(), hashKey, exclude });
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
  async request(service: string, opts: RequestOptions = {}): Promise<Dispatcher.ResponseData> {
    if (this.closed) throw new GatewayClosedError();
    const headerDeadline = Number(opts.headers?.[DEADLINE_HEADER]);
    const deadlineMs = opts.deadline ?? (Number.isFinite(headerDeadline) && headerDeadline > 0 ? headerDeadline : this.policy.deadline);
    const ctl = new RequestCtl(service, deadlineMs);
    this.active.add(ctl);
    const signal = opts.signal;
    const onCallerAbort = signal ? (): void => ctl.abort(new RequestAbortedError(service, { cause: signal.reason })) : undefined;
    if (signal && onCallerAbort) {
      if (signal.aborted) onCallerAbort();
      else signal.addEventListener("abort", onCallerAbort, { once: true });
    }
    const finished = (): void => {
      this.active.delete(ctl);
      if (signal && onCallerAbort) signal.removeEventListener("abort", onCallerAbort);
    };
    let permit: Permit | undefined;
    try {
      const rt = this.readyNow(service) ?? (await ctl.race(this.ready(service, Math.min(this.policy.snapshotTimeout, deadlineMs))));
      permit = rt.limiter.tryAcquire();
      if (!permit) {
        const wait = ctl.waitSignal();
        try {
          const acquired = await rt.limiter.acquire(wait.signal);
          if (!acquired.ok) {
            if (acquired.reason === "queue-full") throw new QueueFullError(service, rt.limiter.options.maxConcurrent, rt.limiter.options.maxQueue);
            throw ctl.reason;
          }
          permit = acquired.permit;
        } finally {
          wait.dispose();
        }
      }
      rt.counters.requests++;
      const res = await this.execute(rt, opts, ctl);
      const held = permit;
      permit = undefined;
      onBodyClosed(res, () => {
        held.release();
        ctl.live.clear();
        finished();
      });
      return res;
    } catch (err) {
      finished();
      throw err;
    } finally {
      permit?.release();
    }
  }

  /** The runtime of a service whose catalog is already mirrored (no wait), or undefined. */
  private readyNow(service: string): ServiceRuntime | undefined {
    const view = this.mirror.view(service);
    if (!view) return undefined;
    if (!view.known && view.instances.length === 0) throw new UnknownServiceError(service, view.revision);
    return this.runtime(service);
  }

  private async execute(rt: ServiceRuntime, opts: RequestOptions, ctl: RequestCtl): Promise<Dispatcher.ResponseData> {
    const method = opts.method ?? "GET";
    const idempotent = isIdempotent(method, opts.idempotent);
    const replayable = isReplayable(opts.body);
    const maxRetries = replayable ? (opts.maxRetries ?? this.policy.maxRetries) : 0;
    const hedging = this.policy.hedge.enabled && idempotent && replayable;
    const ctx: TryContext = { rt, opts, method, ctl, tryTimeout: opts.timeout ?? this.policy.tryTimeout };
    const now = Date.now();
    rt.budget.recordRequest(now);
    if (hedging) rt.hedge.recordRequest(now);
    const exclude = new Set<string>();
    let last: TryResult | undefined;
    for (;;) {
      const picked = this.pickFor(rt, opts.hashKey, exclude);
      if (!picked.ok) {
        if (last) return this.finish(rt, last, ctl.tries);
        throw new NoHealthyUpstreamError(rt.name, this.mirror.revision(rt.name), picked.reasons);
      }
      exclude.add(picked.endpoint.id);
      ctl.tries++;
      rt.counters.tries++;
      const result = hedging ? await this.hedged(ctx, picked.endpoint, exclude) : await this.runTry(ctx, picked.endpoint, new AbortController());
      if (result.kind === "response") return result.res;
      last = result;
      ctl.last = result.kind === "error" ? result.err : new Error(`status ${result.res.statusCode} from ${result.ep.id}`);
      if (ctl.aborted) {
        if (result.kind === "status") await this.dropStatus(ctl, result);
        throw ctl.reason;
      }
      if (!shouldRetry(result.outcome, idempotent) || ctl.tries > maxRetries) return this.finish(rt, result, ctl.tries);
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
    ctl.live.delete(result.ac);
  }

  /** The last try's verdict when no retry happens: a response is returned, an error thrown. */
  private finish(rt: ServiceRuntime, result: TryResult, tries: number): Dispatcher.ResponseData {
    if (result.kind !== "error") return result.res;
    if (result.err instanceof TryTimeoutError) throw result.err;
    const reason = result.outcome.kind === "failure" ? result.outcome.reason : result.outcome.kind;
    throw new UpstreamError(rt.name, result.ep.id, reason, tries, { cause: result.err });
  }

  /** One try against one endpoint; never rejects. `ac` stays in `ctl.live` while its response is open. */
  private async runTry(ctx: TryContext, ep: Endpoint, ac: AbortController): Promise<TryResult> {
    const { rt, opts, ctl } = ctx;
    ctl.live.add(ac);
    if (ctl.aborted) ac.abort(ctl.reason);
    const remaining = ctl.remaining();
    const deadlineBound = remaining <= ctx.tryTimeout;
    const timeoutMs = Math.max(1, Math.min(ctx.tryTimeout, remaining));
    const timer = setTimeout(() => {
      if (deadlineBound) ctl.abort(ctl.deadlineError());
      else ac.abort(new TryTimeoutError(rt.name, ep.id, timeoutMs));
    }, timeoutMs);
    const t0 = performance.now();
    rt.balancer.onStart(ep.id, Date.now());
    let headers: Record<string, string | string[]>;
    if (opts.headers) {
      headers = {};
      for (const k in opts.headers) {
        const v = opts.headers[k];
        if (v !== undefined) headers[k] = v;
      }
    } else headers = {};
    headers[DEADLINE_HEADER] = String(Math.max(1, Math.floor(remaining)));
    try {
      const res = await this.pool(ep).request({
        path: opts.path ?? "/",
        method: ctx.method,
        headers,
        body: (opts.body ?? null) as Dispatcher.RequestOptions["body"],
        signal: ac.signal,
      });
      clearTimeout(timer);
      const latencyMs = performance.now() - t0;
      const now = Date.now();
      if (RETRYABLE_STATUS.has(res.statusCode)) {
        const outcome: Outcome = { kind: "failure", reason: "status", statusCode: res.statusCode, latencyMs };
        rt.balancer.onResult(ep.id, outcome, now);
        return { kind: "status", res, ep, outcome, ac };
      }
      if (res.statusCode >= 500) {
        rt.balancer.onResult(ep.id, { kind: "failure", reason: "status", statusCode: res.statusCode, latencyMs }, now);
      } else {
        rt.balancer.onResult(ep.id, { kind: "success", latencyMs }, now);
        rt.hedge.recordLatency(latencyMs, now);
      }
      return { kind: "response", res, ep, ac };
    } catch (err) {
      clearTimeout(timer);
      ctl.live.delete(ac);
      const latencyMs = performance.now() - t0;
      const why: unknown = ac.signal.aborted ? ac.signal.reason : undefined;
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
      rt.balancer.onResult(ep.id, outcome, Date.now());
      if (outcome.kind === "failure") this.log.debug({ service: rt.name, endpoint: ep.id, reason: outcome.reason, err: (err as Error)?.message }, "try failed");
      return { kind: "error", err: error, ep, outcome };
    }
  }

  /** A try, plus a second one to another instance if the first is slower than the observed p95. */
  private async hedged(ctx: TryContext, ep: Endpoint, exclude: Set<string>): Promise<TryResult> {
    const { rt, ctl } = ctx;
    const ac1 = new AbortController();
    const p1 = this.runTry(ctx, ep, ac1);
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
    const picked = this.pickFor(rt, ctx.opts.hashKey, exclude);
    if (!picked.ok || exclude.has(picked.endpoint.id) || !rt.hedge.shouldHedge(Date.now())) {
      permit.release();
      return p1;
    }
    exclude.add(picked.endpoint.id);
    rt.counters.hedges++;
    rt.counters.tries++;
    const ac2 = new AbortController();
    const p2 = this.runTry(ctx, picked.endpoint, ac2);
    void p2.finally(() => permit.release());
    return new Promise<TryResult>((resolve) => {
      let settled = false;
      const failures: TryResult[] = [];
      const lose = (r: TryResult): void => {
        if (r.kind !== "error") {
          ctl.live.delete(r.ac);
          (r.res.body as unknown as Readable).destroy();
        }
      };
      const on = (r: TryResult, other: AbortController): void => {
        if (settled) return lose(r);
        if (r.kind === "response") {
          settled = true;
          ctl.live.delete(other);
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
      void p1.then((r) => on(r, ac2));
      void p2.then((r) => on(r, ac1));
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
    for (const ctl of [...this.active]) ctl.abort(new GatewayClosedError());
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
    if (this.ownsNc && this.nc) await this.nc.close().catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** @internal */
interface TryContext {
  rt: ServiceRuntime;
  opts: RequestOptions;
  method: string;
  ctl: RequestCtl;
  tryTimeout: number;
}

/**
 * One request's control: what can end it (the caller's signal, the deadline, close()) reaches
 * the tries in flight (`live`) and any wait, without an AbortController or a timer per
 * request on the fast path.
 */
class RequestCtl {
  readonly started = Date.now();
  tries = 0;
  last: unknown;
  reason: unknown = undefined;
  /** Tries in flight, and the winning try while its response body is open. */
  readonly live = new Set<AbortController>();
  private readonly wakers = new Set<() => void>();

  constructor(
    readonly service: string,
    readonly deadlineMs: number,
  ) {}

  get aborted(): boolean {
    return this.reason !== undefined;
  }

  remaining(): number {
    return this.deadlineMs - (Date.now() - this.started);
  }

  deadlineError(): DeadlineExceededError {
    return new DeadlineExceededError(this.service, this.deadlineMs, this.tries, { cause: this.last });
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.reason = reason;
    for (const ac of this.live) ac.abort(reason);
    for (const w of [...this.wakers]) w();
  }

  /** Waits `ms`; rejects with the reason when aborted first, or at the deadline. */
  sleep(ms: number): Promise<void> {
    if (this.aborted) return Promise.reject(this.reason);
    const rem = this.remaining();
    const atDeadline = ms >= rem;
    return new Promise<void>((resolve, reject) => {
      const w = (): void => {
        clearTimeout(t);
        this.wakers.delete(w);
        reject(this.reason);
      };
      const t = setTimeout(() => {
        this.wakers.delete(w);
        if (atDeadline) {
          this.abort(this.deadlineError());
          reject(this.reason);
        } else resolve();
      }, Math.max(0, Math.min(ms, rem)));
      this.wakers.add(w);
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
    this.wakers.add(w);
    const timer = setTimeout(() => this.abort(this.deadlineError()), Math.max(0, this.remaining()));
    return {
      signal: ac.signal,
      dispose: () => {
        clearTimeout(timer);
        this.wakers.delete(w);
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
