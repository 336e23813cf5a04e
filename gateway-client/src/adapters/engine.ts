// The request engine: one implementation of what happens to a request — routable service,
// concurrency slot (or a place in the queue), pick, tries with their timers and aborts on the
// instance's pool, hedging, and after each try the core's decision (core/decide.ts: return,
// retry elsewhere, stop; budget; deadline; backoff), outcome feedback to the balancer.
// `Gateway.request()` and the undici dispatcher (adapters/dispatcher.ts) are thin front-ends
// over `Engine.request()`, so both get the same semantics by construction.
//
// Async context: every request captures the caller's async context when it starts (an
// AsyncResource) and everything the engine runs for it from a shared source — the timeout
// queue's timers, the dispatcher's body events — runs inside it, so a retry or a hedge never
// runs in another request's context (AsyncLocalStorage, tracers, log correlation).
import { AsyncResource } from "node:async_hooks";
import type { EventEmitter } from "node:events";
import type { Readable } from "node:stream";
import { Dispatcher } from "undici";
import type { ServiceBalancer } from "../core/service-balancer.js";
import type { Endpoint, NoHealthyReasons, Outcome, PickResult } from "../core/types.js";
import type { ConcurrencyLimiter, Permit } from "../core/concurrency.js";
import type { HedgePolicy } from "../core/hedge.js";
import type { RetryBudget } from "../core/retry-budget.js";
import { afterTry, callerDeadline, hedgeNow, tryTimer, type StopReason } from "../core/decide.js";
import { isIdempotent } from "../core/retry-policy.js";
import { classifyError, RETRYABLE_STATUS } from "./classify.js";
import type { Logger } from "./logger.js";
import type { RequestErrorSink } from "./request-errors.js";
import { TimeoutQueue, TryTimerEntry } from "./timeouts.js";
import { nowMs } from "./clock.js";
import type { RequestTrace, TryKind, TryTrace, Tracing } from "./tracing.js";
import type { GatewayPolicy } from "../config.js";
import {
  DeadlineExceededError,
  GatewayClosedError,
  NoHealthyUpstreamError,
  QueueFullError,
  RequestAbortedError,
  RetryBudgetExhaustedError,
  TryTimeoutError,
  UpstreamError,
} from "../errors.js";

/**
 * Header carrying the remaining deadline (ms) to the upstream, which may pass it on. Sent when the
 * request's deadline was set (RequestPlan.propagateDeadline), not for the built-in default.
 */
export const DEADLINE_HEADER = "x-roster-deadline-ms";

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
  /**
   * Overall deadline (ms from now); default the incoming `x-roster-deadline-ms` header when present,
   * else the gateway's `deadline`. A deadline set here, by that header, by the service's policy or
   * by the gateway's `deadline` option travels upstream in the header; the built-in 10 s does not.
   */
  deadline?: number;
  /** Retries after the first try; default `maxRetries`. */
  maxRetries?: number;
  /** Consistent-hashing key (ring-hash balancer). */
  hashKey?: string;
  signal?: AbortSignal;
}

/**
 * The per-request plan: which balancer (and so which instances) serve it, the hash key, the
 * try timeout, the deadline, the retry limit and whether it may hedge. The engine fills it
 * from the gateway's policy and the request's options, then lets `TrafficHooks.plan` change
 * it (per-service traffic policies: subsets, affinity, timeouts...).
 */
/** What picks the instances of a request: the service's balancer, or a policy's subset picker. */
export type PlanBalancer = Pick<ServiceBalancer, "pick" | "onStart" | "onResult" | "ejectionsTotal">;

export interface RequestPlan {
  /** Picks the instance of each try; a subset's own balancer narrows the candidates. */
  balancer: PlanBalancer;
  hashKey: string | undefined;
  tryTimeout: number;
  /** ms from the request's start. */
  deadlineMs: number;
  /** Tries carry the deadline upstream in `x-roster-deadline-ms` (it was set, not the built-in default). */
  propagateDeadline: boolean;
  maxRetries: number;
  hedging: boolean;
}

/** The seam for per-service traffic policies (see docs/architecture.md, "the request engine"). @experimental */
export interface TrafficHooks {
  /**
   * Adjusts the plan of a request (once, before its first try). Must be cheap: it runs on every
   * request. May throw (the request fails) or return a response to answer without any try.
   */
  plan?(service: string, request: Readonly<RequestOptions>, plan: RequestPlan): Promise<Dispatcher.ResponseData> | void;
  /** Every try's outcome, after the balancer has it (`response`: the try's answer, if any). */
  onOutcome?(service: string, endpoint: Endpoint, outcome: Outcome, response?: Dispatcher.ResponseData, request?: Readonly<RequestOptions>): void;
  /**
   * Every try failed (the error, or the failing status about to be returned): a response to give
   * the caller instead (a fallback), or undefined.
   */
  onGiveUp?(service: string, request: Readonly<RequestOptions>, failure: unknown): Promise<Dispatcher.ResponseData> | undefined;
  /**
   * No instance can serve (nothing to pick, before any try): return a response to give the
   * caller instead (a fallback), or undefined for the NoHealthyUpstreamError.
   */
  onNoInstance?(service: string, reasons: NoHealthyReasons, request?: Readonly<RequestOptions>): Promise<Dispatcher.ResponseData> | undefined;
}

/** The part of a pool the engine uses (undici's Pool, or what an injected pool factory makes). */
export type UpstreamPool = Pick<Dispatcher, "request" | "dispatch" | "close" | "destroy">;

/** @internal What the request path keeps per service. */
export interface ServiceRuntime {
  readonly name: string;
  readonly balancer: ServiceBalancer;
  readonly budget: RetryBudget;
  readonly limiter: ConcurrencyLimiter;
  readonly hedge: HedgePolicy;
  panic: boolean;
  /** The mirror knows the service (or lists instances of it): requests route without a wait. */
  routable: boolean;
  /** Catalog revision the balancer reflects (-1: none yet): a change on top of it is applied alone. */
  revision: number;
  /** Upstream origins of the instances, with how many instances have each. */
  origins: Map<string, number>;
  /** Pool per endpoint object (a fresh map when the catalog is replaced or pools are removed). */
  poolOf: WeakMap<Endpoint, UpstreamPool>;
  counters: { requests: number; responses: number; tries: number; retries: number; hedges: number; budgetExhausted: number };
}

/** @internal What the engine needs from the gateway that owns it. */
export interface EngineHost {
  readonly options: GatewayPolicy;
  readonly log: Logger;
  readonly requestErrors: RequestErrorSink;
  readonly tracing: Tracing | undefined;
  readonly hooks: TrafficHooks | undefined;
  isClosed(): boolean;
  /** The runtime of a service already routable, without a wait (fast path). */
  routable(service: string): ServiceRuntime | undefined;
  /** Same, or the runtime of a service the mirror holds; throws UnknownServiceError; undefined: must wait. */
  readyNow(service: string): ServiceRuntime | undefined;
  ready(service: string, timeoutMs: number): Promise<ServiceRuntime>;
  pickFor(rt: ServiceRuntime, balancer: PlanBalancer, hashKey: string | undefined, exclude: ReadonlySet<string> | undefined, now: number): PickResult;
  poolFor(rt: ServiceRuntime, ep: Endpoint): UpstreamPool;
  revision(service: string): number;
  backoff(retry: number): number;
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

export function originOf(i: { address: string; port: number }): string {
  const host = i.address.includes(":") && !i.address.startsWith("[") ? `[${i.address}]` : i.address;
  return `http://${host}:${i.port}`;
}

/** The legacy dispatch-handler methods of undici's request handler, which a direct try forwards. */
interface RequestHandlerLike {
  onConnect(abort: (reason?: Error) => void, context?: unknown): void;
  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean;
  onData(chunk: Buffer): boolean;
  onComplete(trailers: string[] | null): void;
  onError(err: Error): void;
}

const FORWARDED = ["onConnect", "onHeaders", "onData", "onComplete", "onError"] as const;
/** Handler methods undici calls when present: a request handler with any of them is not forwarded (see TryHandle). */
const NOT_FORWARDED = ["onRequestStart", "onResponseStarted", "onBodySent", "onRequestSent", "onUpgrade", "onResponseStart"];

/**
 * Sends a try through undici's own `Dispatcher.prototype.request` — the same RequestHandler,
 * ResponseData and body class as `pool.request()` — with the try handle put between that handler
 * and the pool's `dispatch()`, so the try gets undici's abort from `onConnect` instead of undici
 * listening to an abort signal (a closure, a listener added and removed, and a second 'close'
 * listener on every response body: ~600 instructions per try; docs/BENCHMARKS.md). Public API
 * only: a Dispatcher subclass implementing `dispatch()`, which is what `request()` is built on.
 * One per engine: `request()` calls `dispatch()` synchronously, so `next` and `pool` are the
 * try being sent.
 */
class TryDispatch extends Dispatcher {
  next: TryHandle | undefined = undefined;
  pool: UpstreamPool | undefined = undefined;

  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const h = this.next!;
    const pool = this.pool!;
    this.next = this.pool = undefined;
    h.inner = handler as unknown as RequestHandlerLike;
    return pool.dispatch(opts, h as unknown as Dispatcher.DispatchHandler);
  }

  override close(): Promise<void> {
    return Promise.resolve();
  }

  override destroy(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * Whether this undici's `request()` hands `dispatch()` a handler that a try can forward: exactly
 * the legacy methods (undici 7's RequestHandler). Asked once, by sending a request to a probe
 * dispatcher that records the handler and drops it (its callback is never called). Any other
 * shape (a future undici) keeps the signal path.
 */
let forwardable: boolean | undefined;
function requestHandlerForwardable(): boolean {
  if (forwardable !== undefined) return forwardable;
  let ok = false;
  class Probe extends Dispatcher {
    override dispatch(_opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
      const x = handler as unknown as Record<string, unknown>;
      ok = FORWARDED.every((m) => typeof x[m] === "function") && !NOT_FORWARDED.some((m) => m in x);
      return true;
    }
  }
  try {
    new Probe().request({ path: "/", method: "GET" }, () => {});
  } catch {
    ok = false;
  }
  return (forwardable = ok);
}

/** undici's `request()` (what a Pool of the gateway's undici has, unless something replaced it). */
const undiciRequest = Dispatcher.prototype.request;

/** @internal */
export class Engine {
  /** Per-try timeouts: one FIFO and one timer per distinct duration. */
  readonly timeouts = new TimeoutQueue();
  /** Requests from start until their body closes (for close()): an intrusive list. */
  private activeHead: RequestCtl | undefined = undefined;
  private lastDeadlineMs = -1;
  private lastDeadlineStr = "";
  /** `[DEADLINE_HEADER, lastDeadlineStr]`: the headers of a request without its own (undici only reads them). */
  private lastDeadlinePair: string[] = [];
  /** Sends tries to pools whose `request` is undici's own without an abort signal (see TryDispatch); undefined: never. */
  private readonly direct = requestHandlerForwardable() ? new TryDispatch() : undefined;

  constructor(readonly host: EngineHost) {}

  /**
   * Sends a request to an instance of `service`; resolves with undici's ResponseData once the
   * response headers arrive. `control`, when given, receives the request's abort (the
   * dispatcher's handler abort) without an AbortSignal, and the request's async context.
   */
  request(service: string, opts: RequestOptions, control?: { abort?: (reason: Error) => void; ctx?: AsyncResource }): Promise<Dispatcher.ResponseData> {
    const host = this.host;
    if (host.isClosed()) return Promise.reject(new GatewayClosedError());
    let ctl: RequestCtl | undefined;
    try {
      const p = host.options;
      const set = callerDeadline(opts.deadline, opts.headers?.[DEADLINE_HEADER]);
      ctl = new RequestCtl(this, service, opts, set ?? p.deadline);
      ctl.propagateDeadline = set !== undefined || p.deadlineSet;
      if (control) {
        const c = ctl;
        control.abort = (reason) => c.abort(reason);
        control.ctx = c.ctx;
      }
      const rt = host.routable(service);
      if (rt !== undefined && !ctl.aborted && rt.limiter.tryTake()) {
        ctl.slot = rt.limiter;
        this.prepare(ctl, rt);
        if (ctl.answer) return this.requestSlow(ctl);
        // Fast path: no async function, one promise; the first try's callback settles it.
        const fast = ctl;
        if (!fast.hedging) return new Promise<Dispatcher.ResponseData>((resolve, reject) => this.firstTry(fast, resolve, reject));
      }
    } catch (err) {
      // Bad options from an untyped caller (a method that is not a string...): a rejection, never a throw.
      if (ctl) this.failed(ctl, err);
      else host.requestErrors.add(service, err);
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return this.requestSlow(ctl);
  }

  /** Waits for the catalog and a concurrency slot when needed, then runs the tries. */
  private async requestSlow(ctl: RequestCtl): Promise<Dispatcher.ResponseData> {
    const { service } = ctl;
    const host = this.host;
    try {
      if (!ctl.rt) {
        const rt = host.readyNow(service) ?? (await ctl.race(host.ready(service, Math.min(host.options.snapshotTimeout, ctl.deadlineMs))));
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
        if (ctl.aborted) throw ctl.reason;
        this.prepare(ctl, rt);
      }
      const res = ctl.answer ? await ctl.answer : await this.execute(ctl, undefined);
      ctl.holdUntilResponseEnds(res);
      return res;
    } catch (err) {
      this.failed(ctl, err);
      throw err;
    }
  }

  /** The request ends in an error: slot back, counted, traced. */
  private failed(ctl: RequestCtl, err: unknown): void {
    ctl.finish();
    this.host.requestErrors.add(ctl.service, err);
    if (ctl.trace) {
      ctl.trace.end(undefined, err);
      ctl.trace = undefined;
    }
  }

  /** Per-request plan, and the request counted (slot held). */
  private prepare(ctl: RequestCtl, rt: ServiceRuntime): void {
    const opts = ctl.opts;
    const p = this.host.options;
    const method = opts.method ?? "GET";
    const replayable = isReplayable(opts.body);
    ctl.rt = rt;
    ctl.balancer = rt.balancer;
    ctl.method = method;
    ctl.hashKey = opts.hashKey;
    ctl.idempotent = isIdempotent(method, opts.idempotent);
    ctl.maxRetries = opts.maxRetries ?? p.maxRetries;
    ctl.hedging = p.hedge.enabled && ctl.idempotent;
    ctl.tryTimeout = opts.timeout ?? p.tryTimeout;
    const hooks = this.host.hooks;
    if (hooks?.plan) ctl.answer = hooks.plan(rt.name, opts, ctl) ?? undefined;
    if (!replayable) {
      ctl.maxRetries = 0;
      ctl.hedging = false;
    }
    rt.counters.requests++;
    rt.budget.recordRequest(ctl.started);
    if (ctl.hedging) rt.hedge.recordRequest(ctl.started);
    const tracing = this.host.tracing;
    if (tracing) ctl.trace = tracing.begin(rt.name, method, opts.path ?? "/", ctl.started);
  }

  /** Nothing to pick for a request's first try: the traffic hook's fallback, or the error. */
  private noInstance(ctl: RequestCtl, reasons: NoHealthyReasons): Promise<Dispatcher.ResponseData> | undefined {
    const fallback = this.host.hooks?.onNoInstance?.(ctl.service, reasons, ctl.opts);
    if (fallback) return fallback;
    throw new NoHealthyUpstreamError(ctl.service, this.host.revision(ctl.service), reasons);
  }

  /** Fast path: the first try, started synchronously; retries continue in `execute`. */
  private firstTry(ctl: RequestCtl, resolve: (res: Dispatcher.ResponseData) => void, reject: (err: unknown) => void): void {
    ctl.resolve = resolve;
    ctl.reject = reject;
    try {
      const rt = ctl.rt!;
      const picked = this.host.pickFor(rt, ctl.balancer!, ctl.hashKey, undefined, ctl.started);
      if (!picked.ok) {
        const fallback = this.noInstance(ctl, picked.reasons)!;
        fallback.then((res) => this.returned(ctl, res), (err: unknown) => this.rejected(ctl, err));
        return;
      }
      if (picked.panic) ctl.trace?.event("panic");
      ctl.tries++;
      rt.counters.tries++;
      this.startTry(new TryHandle(ctl, picked.endpoint, undefined, "first"), ctl.started);
    } catch (err) {
      this.rejected(ctl, err);
    }
  }

  private returned(ctl: RequestCtl, res: Dispatcher.ResponseData): void {
    ctl.holdUntilResponseEnds(res);
    ctl.resolve!(res);
  }

  private rejected(ctl: RequestCtl, err: unknown): void {
    this.failed(ctl, err);
    ctl.reject!(err);
  }

  /** The fast path's first try is over. */
  firstTryDone(ctl: RequestCtl, result: TryResult): void {
    if (result.kind === "response") return this.returned(ctl, result.res);
    this.execute(ctl, result).then(
      (res) => this.returned(ctl, res),
      (err: unknown) => this.rejected(ctl, err),
    );
  }

  trackActive(ctl: RequestCtl): void {
    ctl.nextActive = this.activeHead;
    if (this.activeHead) this.activeHead.prevActive = ctl;
    this.activeHead = ctl;
  }

  untrackActive(ctl: RequestCtl): void {
    const { prevActive: prev, nextActive: next } = ctl;
    if (prev) prev.nextActive = next;
    else if (this.activeHead === ctl) this.activeHead = next;
    else return; // not tracked
    if (next) next.prevActive = prev;
    ctl.prevActive = ctl.nextActive = undefined;
  }

  /** Aborts every request in flight (close()). */
  abortAll(reason: Error): void {
    const active: RequestCtl[] = [];
    for (let c = this.activeHead; c; c = c.nextActive) active.push(c);
    for (const ctl of active) ctl.abort(reason);
  }

  /** The tries of a prepared request; `first` is the result of a try already made (fast path). */
  private async execute(ctl: RequestCtl, first: TryResult | undefined): Promise<Dispatcher.ResponseData> {
    const rt = ctl.rt!;
    const host = this.host;
    let exclude: Set<string> | undefined;
    for (;;) {
      let result: TryResult;
      if (first) {
        result = first;
        first = undefined;
        exclude = new Set([result.ep.id]);
      } else {
        const picked = host.pickFor(rt, ctl.balancer!, ctl.hashKey, exclude, nowMs());
        if (!picked.ok) {
          if (ctl.lastResult) return this.stop(ctl, ctl.lastResult, "max-retries");
          return this.noInstance(ctl, picked.reasons)!;
        }
        if (picked.panic) ctl.trace?.event("panic");
        exclude ??= new Set<string>();
        exclude.add(picked.endpoint.id);
        ctl.tries++;
        rt.counters.tries++;
        const kind: TryKind = ctl.tries === 1 ? "first" : "retry";
        result = ctl.hedging ? await this.hedged(ctl, picked.endpoint, exclude, kind) : await this.runTry(new TryHandle(ctl, picked.endpoint, undefined, kind));
      }
      if (result.kind === "response") return result.res;
      ctl.lastResult = result;
      ctl.last = result.kind === "error" ? result.err : new Error(`status ${result.res.statusCode} from ${result.ep.id}`);
      const decision = afterTry(
        {
          outcome: result.outcome,
          hasResponse: result.kind === "status",
          idempotent: ctl.idempotent,
          tries: ctl.tries,
          maxRetries: ctl.maxRetries,
          aborted: ctl.aborted,
          remainingMs: ctl.remaining(),
        },
        rt.budget,
        nowMs(),
        (retry) => host.backoff(retry),
      );
      if (decision.action === "stop") return this.stop(ctl, result, decision.why);
      rt.counters.retries++;
      if (result.kind === "status") {
        await this.dropStatus(ctl, result);
        // Its body is gone: if no instance is left for the retry, the request fails (never returns a drained response).
        ctl.lastResult = { kind: "error", err: ctl.last, ep: result.ep, outcome: result.outcome };
      }
      await ctl.sleep(decision.backoffMs);
    }
  }

  /** No more tries: the last try's response is returned, or the error that says why. */
  private async stop(ctl: RequestCtl, result: TryResult, why: StopReason): Promise<Dispatcher.ResponseData> {
    try {
      return await this.stopWith(ctl, result, why);
    } catch (err) {
      const fallback = why === "aborted" ? undefined : this.host.hooks?.onGiveUp?.(ctl.service, ctl.opts, err);
      if (fallback) return fallback;
      throw err;
    }
  }

  private async stopWith(ctl: RequestCtl, result: TryResult, why: StopReason): Promise<Dispatcher.ResponseData> {
    const rt = ctl.rt!;
    if (why === "budget") {
      rt.counters.budgetExhausted++;
      ctl.trace?.event("budget-refused", { "roster.attempt": ctl.tries });
    }
    if (why === "aborted") {
      if (result.kind === "status") await this.dropStatus(ctl, result);
      throw ctl.reason;
    }
    if (result.kind !== "error") {
      if (result.kind !== "status") return result.res;
      const fallback = this.host.hooks?.onGiveUp?.(ctl.service, ctl.opts, result.res);
      if (!fallback) return result.res;
      await this.dropStatus(ctl, result);
      return fallback;
    }
    if (why === "budget") throw new RetryBudgetExhaustedError(rt.name, ctl.tries, { cause: result.err });
    if (why === "deadline") {
      ctl.abort(ctl.deadlineError());
      throw ctl.reason;
    }
    if (result.err instanceof TryTimeoutError || result.err instanceof DeadlineExceededError) throw result.err;
    const reason = result.outcome.kind === "failure" ? result.outcome.reason : result.outcome.kind;
    throw new UpstreamError(rt.name, result.ep.id, reason, ctl.tries, { cause: result.err });
  }

  /** Reads and discards the body of a retryable status that is not returned. */
  private async dropStatus(ctl: RequestCtl, result: Extract<TryResult, { kind: "status" }>): Promise<void> {
    await discard(result.res);
    ctl.deleteLive(result.h);
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
      this.startTry(h, nowMs());
    });
  }

  /**
   * Starts one try against `h.ep` (`now`: the clock read just before, or the request's start); its result
   * goes to `h.settle`, or to the fast path when unset. `h` stays live in its request while
   * the response is open.
   */
  private startTry(h: TryHandle, now: number): void {
    const ctl = h.ctl;
    const rt = ctl.rt!;
    const opts = ctl.opts;
    ctl.addLive(h);
    const remaining = ctl.deadlineMs - (now - ctl.started);
    const timer = tryTimer(ctl.tryTimeout, remaining);
    h.deadlineBound = timer.deadlineBound;
    h.timeoutMs = timer.timeoutMs;
    h.t0 = now;
    ctl.balancer!.onStart(h.ep.id, now);
    const trace = ctl.trace;
    if (trace) h.trace = trace.tryStart(h.ep, ctl.tries, h.kind);
    if (ctl.aborted) return h.abort(ctl.reason); // settles the try at once (cancelled); nothing is sent
    this.timeouts.add(h, h.timeoutMs, h.t0);
    let headers: Record<string, string | string[]> | string[] | undefined;
    const traceparent = h.trace?.traceparent;
    if (opts.headers || traceparent) {
      const out: Record<string, string | string[]> = {};
      for (const k in opts.headers) {
        const v = opts.headers[k];
        if (v !== undefined && k !== DEADLINE_HEADER) out[k] = v; // an incoming one is replaced by what remains, or dropped
      }
      if (ctl.propagateDeadline) out[DEADLINE_HEADER] = this.deadlineHeader(remaining);
      if (traceparent) out.traceparent = traceparent;
      headers = out;
    } else if (ctl.propagateDeadline) {
      this.deadlineHeader(remaining);
      headers = this.lastDeadlinePair; // shared: undici copies headers into its own request
    }
    try {
      const pool = this.host.poolFor(rt, h.ep);
      const direct = this.direct;
      const request: Dispatcher.RequestOptions = {
        path: opts.path ?? "/",
        method: ctl.method as Dispatcher.HttpMethod,
        headers,
        body: (opts.body ?? null) as Dispatcher.RequestOptions["body"],
        signal: undefined,
      };
      if (direct !== undefined && pool.request === undiciRequest) {
        direct.next = h;
        direct.pool = pool;
        direct.request(request, h.callback);
        direct.next = direct.pool = undefined; // request() failed before dispatching: its callback has the error
      } else {
        // Another pool (an injected factory's, another undici's): undici-style abort signal.
        request.signal = h as unknown as EventEmitter;
        pool.request(request, h.callback);
      }
    } catch (err) {
      // undici reports request errors through the callback; this is a pool that could not be made.
      this.tryDone(h, err instanceof Error ? err : new Error(String(err)), undefined);
    }
  }

  /** Feeds a try's outcome back: the balancer, the hedge's latencies, the trace, the traffic hook. */
  private report(ctl: RequestCtl, h: TryHandle, outcome: Outcome, status: number | undefined, now: number, res?: Dispatcher.ResponseData): void {
    const balancer = ctl.balancer!;
    const ejections = balancer.ejectionsTotal;
    balancer.onResult(h.ep.id, outcome, now);
    if (outcome.kind === "success" && ctl.hedging) ctl.rt!.hedge.recordLatency(outcome.latencyMs, now);
    if (h.trace) {
      h.trace.end(outcome, status);
      if (balancer.ejectionsTotal !== ejections) ctl.trace?.event("ejection", { "roster.instance.id": h.ep.id });
    }
    const hooks = this.host.hooks;
    if (hooks?.onOutcome) hooks.onOutcome(ctl.service, h.ep, outcome, res, ctl.opts);
  }

  /** undici's answer to a try: bookkeeping, then the result to whoever waits. */
  tryDone(h: TryHandle, err: Error | null, res: Dispatcher.ResponseData | undefined): void {
    if (h.over) {
      // undici's late answer to a try the gateway settled itself (timeout, deadline, abort):
      // ignored; a response's body is read off or destroyed so its connection is not held.
      if (res !== undefined) void discard(res);
      return;
    }
    h.over = true;
    this.timeouts.remove(h);
    if (res !== undefined && h.inner !== undefined) h.res = res;
    const ctl = h.ctl;
    const ep = h.ep;
    const now = nowMs();
    const latencyMs = now - h.t0;
    let result: TryResult;
    if (err === null && res !== undefined) {
      const status = res.statusCode;
      if (RETRYABLE_STATUS.has(status)) {
        const outcome: Outcome = { kind: "failure", reason: "status", statusCode: status, latencyMs };
        this.report(ctl, h, outcome, status, now, res);
        result = { kind: "status", res, ep, outcome, h };
      } else {
        this.report(ctl, h, status >= 500 ? { kind: "failure", reason: "status", statusCode: status, latencyMs } : { kind: "success", latencyMs }, status, now, res);
        if (h.settle === undefined) {
          // The fast path's first try answered: the request is done.
          return this.returned(ctl, res);
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
      this.report(ctl, h, outcome, undefined, now);
      if (outcome.kind === "failure") this.host.log.debug({ service: ctl.service, endpoint: ep.id, reason: outcome.reason, err: err?.message }, "try failed");
      result = { kind: "error", err: error, ep, outcome };
    }
    if (h.settle) h.settle(result);
    else this.firstTryDone(ctl, result);
  }

  /** A try, plus a second one to another instance if the first is slower than the observed quantile. */
  private async hedged(ctl: RequestCtl, ep: Endpoint, exclude: Set<string>, kind: TryKind): Promise<TryResult> {
    const rt = ctl.rt!;
    const h1 = new TryHandle(ctl, ep, undefined, kind);
    const p1 = this.runTry(h1);
    const delay = rt.hedge.hedgeDelayMs(nowMs());
    if (delay === undefined) return p1; // not enough samples yet
    let timer: ReturnType<typeof setTimeout> | undefined;
    const fire = new Promise<"hedge">((r) => (timer = setTimeout(() => r("hedge"), delay)));
    const first = await Promise.race([p1, fire]);
    clearTimeout(timer);
    if (first !== "hedge") return first;
    const permit = ctl.aborted ? undefined : rt.limiter.tryAcquire();
    const picked = permit ? this.host.pickFor(rt, ctl.balancer!, ctl.hashKey, exclude, nowMs()) : undefined;
    const decision = hedgeNow(
      { aborted: ctl.aborted, slotFree: permit !== undefined, otherInstance: picked !== undefined && picked.ok && !exclude.has(picked.endpoint.id) },
      () => rt.hedge.shouldHedge(nowMs()),
    );
    if (!decision.hedge || !picked?.ok) {
      permit?.release();
      return p1;
    }
    exclude.add(picked.endpoint.id);
    rt.counters.hedges++;
    rt.counters.tries++;
    ctl.tries++;
    const h2 = new TryHandle(ctl, picked.endpoint, undefined, "hedge");
    const p2 = this.runTry(h2);
    void p2.finally(() => permit!.release());
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

  close(reason: Error): void {
    this.abortAll(reason);
    this.timeouts.clear();
  }
}

/** Swallows the error a destroyed body emits (as undici does when its signal destroys one). */
function noop(): void {}

/**
 * @internal
 * One try: the entry of the engine's shared timeout queue, and how its abort reaches undici.
 * Sent through TryDispatch (a Pool of the gateway's undici), it is the dispatch handler of its
 * request, forwarding every call to undici's own request handler (`inner`) and keeping the
 * abort undici gives `onConnect`; sent to another pool, it is the abort source that pool
 * listens to (an EventEmitter-like handle, not an AbortController).
 */
export class TryHandle extends TryTimerEntry {
  timeoutMs = 0;
  /** When it started (clock.ts). */
  t0 = 0;
  /** The try's result is out (undici answered, or the engine settled it on an abort): later answers are ignored. */
  over = false;
  trace: TryTrace | undefined = undefined;
  /** undici's callback (a closure, not `opaque`: an injected pool need not hand `opaque` back). */
  readonly callback = (err: Error | null, res?: Dispatcher.ResponseData): void => this.ctl.engine.tryDone(this, err, res);
  /** Sent through TryDispatch: undici's request handler, which this try forwards to. */
  inner: RequestHandlerLike | undefined = undefined;
  /** undici's abort of the dispatched request (from onConnect). */
  private undiciAbort: ((reason?: Error) => void) | undefined = undefined;
  /** The response, once undici answered (an abort destroys its body). */
  res: Dispatcher.ResponseData | undefined = undefined;
  /** Sent through TryDispatch: undici has finished the response (onComplete or onError). */
  ended = false;
  /** Its response was returned: the request is over when the response ends (see RequestCtl.holdUntilResponseEnds). */
  endsRequest = false;

  constructor(
    readonly ctl: RequestCtl,
    readonly ep: Endpoint,
    /** Who waits for the result (a runTry promise); unset: the fast path's first try. */
    public settle: ((r: TryResult) => void) | undefined,
    readonly kind: TryKind,
  ) {
    super();
  }

  deadlineLeft(): number {
    return this.ctl.remaining();
  }

  /** Called from the shared timeout queue (another request's timer): back into this request's context. */
  onTimeout(): void {
    this.ctl.ctx.runInAsyncScope(this.expire, this);
  }

  private expire(this: TryHandle): void {
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
    if (this.inner !== undefined) this.abortDispatched(reason);
    if (!this.over) this.ctl.engine.tryDone(this, reason instanceof Error ? reason : new Error(String(reason)), undefined);
  }

  /**
   * What undici's request handler does when its signal aborts: destroys the response body once
   * there is one, else aborts the dispatched request; not dispatched yet (waiting in the Pool),
   * `onConnect` aborts it when it gets there.
   */
  private abortDispatched(reason: unknown): void {
    const body = this.res?.body as unknown as Readable | undefined;
    if (body !== undefined) {
      if (!body.destroyed) body.on("error", noop).destroy(reason as Error);
    } else if (this.undiciAbort !== undefined) this.undiciAbort(reason as Error);
  }

  // The dispatch handler (TryDispatch): undici's legacy handler methods, which its own
  // request handler implements, forwarded to it.

  onConnect(abort: (reason?: Error) => void, context?: unknown): void {
    if (this.aborted) return abort(this.reason as Error); // as undici's handler does for a signal aborted before
    this.undiciAbort = abort;
    return this.inner!.onConnect(abort, context);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    return this.inner!.onHeaders(statusCode, rawHeaders, resume, statusText);
  }

  onData(chunk: Buffer): boolean {
    return this.inner!.onData(chunk);
  }

  onComplete(trailers: string[] | null): void {
    this.inner!.onComplete(trailers);
    this.responseEnded();
  }

  onError(err: Error): void {
    this.inner!.onError(err);
    this.responseEnded();
  }

  private responseEnded(): void {
    this.ended = true;
    if (this.endsRequest) this.ctl.finish();
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
 * @internal
 * One request's control: what can end it (the caller's signal, the deadline, close()) reaches
 * the tries in flight (`live`) and any wait, without an AbortController or a timer per
 * request on the fast path. Tracked by the engine (for close()) until `finish()`. It is also
 * the request's plan (RequestPlan), filled by `prepare()`.
 */
export class RequestCtl implements RequestPlan {
  readonly started = nowMs();
  /** The caller's async context, for what runs from shared timers. */
  readonly ctx = new AsyncResource("roster.gateway.request");
  tries = 0;
  last: unknown;
  lastResult: TryResult | undefined = undefined;
  reason: unknown = undefined;
  trace: RequestTrace | undefined = undefined;
  /** The concurrency slot held (taken with tryTake) or the permit (after queueing). */
  slot: ConcurrencyLimiter | undefined = undefined;
  permit: Permit | undefined = undefined;
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
  // RequestPlan
  balancer!: PlanBalancer;
  hashKey: string | undefined = undefined;
  propagateDeadline = false;
  maxRetries = 0;
  hedging = false;
  tryTimeout = 0;
  /** An answer the traffic hook gave instead of any try (a fallback). */
  answer: Promise<Dispatcher.ResponseData> | undefined = undefined;
  /** The fast path's promise. */
  resolve: ((res: Dispatcher.ResponseData) => void) | undefined = undefined;
  reject: ((err: unknown) => void) | undefined = undefined;

  constructor(
    readonly engine: Engine,
    readonly service: string,
    readonly opts: RequestOptions,
    public deadlineMs: number,
  ) {
    engine.trackActive(this);
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
    return this.deadlineMs - (nowMs() - this.started);
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

  /**
   * The request is over once its response has ended: undici has read all of it or failed (a try
   * sent through TryDispatch tells), else — a fallback, another pool's response — once `res`'s
   * body closes (read, dumped or destroyed). Until then it holds its slot, and the caller's abort
   * and close() destroy the body. undici frees the connection at the same point (a body the caller
   * has not read yet is buffered), so the concurrency cap counts what the upstream still serves.
   */
  holdUntilResponseEnds(res: Dispatcher.ResponseData): void {
    if (this.rt) this.rt.counters.responses++; // every returned response passes here once
    if (this.trace) {
      this.trace.end(res.statusCode, undefined);
      this.trace = undefined;
    }
    const h = this.live1?.res === res ? this.live1 : this.liveMore && [...this.liveMore].find((x) => x.res === res);
    if (h && h.inner !== undefined) {
      if (h.ended) return this.finish();
      h.endsRequest = true; // no listener on the body: the try's handler sees the end first
      return;
    }
    const body = res.body as unknown as Readable;
    if (body.destroyed || body.closed) return this.finish();
    (body as unknown as Record<symbol, RequestCtl>)[kCtl] = this;
    body.on("close", onReturnedBodyClose); // autoDestroy: emitted after end, error or destroy
  }

  /** Releases the slot, forgets the tries and the caller's signal; idempotent. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.engine.untrackActive(this);
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
