// An undici Dispatcher that routes through the catalog: the origin's host name is the
// service (`fetch("http://orders/x", { dispatcher: gw.dispatcher })`). Each dispatch picks
// an instance, forwards to that instance's Pool, reports the outcome to the balancer, and
// retries on another instance while nothing has reached the caller's handler yet: refused
// or failed connections (any method), resets / timeouts / 502-503-504 (idempotent methods,
// replayable bodies), within the retry budget.
import { Dispatcher } from "undici";
import type { IncomingHttpHeaders } from "node:http";
import type { Duplex } from "node:stream";
import type { Endpoint, Outcome } from "../core/types.js";
import { classifyError, RETRYABLE_STATUS } from "./classify.js";
import { isIdempotent, isRetryable, shouldRetry } from "../core/retry-policy.js";
import { DeadlineExceededError, NoHealthyUpstreamError, RequestAbortedError, RetryBudgetExhaustedError, TryTimeoutError, UpstreamError } from "../errors.js";
import type { Gateway, ServiceRuntime } from "../gateway.js";
import { TryTimerEntry } from "./timeouts.js";

type OldHandler = Required<Pick<Dispatcher.DispatchHandler, "onError">> & Dispatcher.DispatchHandler;

const DEADLINE_HEADER = "x-roster-deadline-ms";

/** Adapts a new-style handler (onRequestStart / onResponse*) to the old callbacks we drive. */
function toOldStyle(h: Dispatcher.DispatchHandler): OldHandler {
  if (!h.onRequestStart && !h.onResponseStart) return h as OldHandler;
  let resumeFn: (() => void) | null = null;
  let abortFn: ((err?: Error) => void) | null = null;
  let paused = false;
  let aborted = false;
  const controller = {
    get aborted() {
      return aborted;
    },
    get paused() {
      return paused;
    },
    reason: null as Error | null,
    abort(reason: Error) {
      aborted = true;
      controller.reason = reason;
      abortFn?.(reason);
    },
    pause() {
      paused = true;
    },
    resume() {
      if (paused) {
        paused = false;
        resumeFn?.();
      }
    },
  };
  const c = controller as unknown as Dispatcher.DispatchController;
  return {
    onConnect(abort) {
      abortFn = abort;
      h.onRequestStart?.(c, {});
    },
    onHeaders(statusCode, rawHeaders, resume, statusText) {
      resumeFn = resume;
      h.onResponseStart?.(c, statusCode, parseRaw(rawHeaders), statusText);
      return !paused;
    },
    onData(chunk) {
      h.onResponseData?.(c, chunk);
      return !paused;
    },
    onComplete(trailers) {
      h.onResponseEnd?.(c, parseRaw(trailers as unknown as Buffer[] | null));
    },
    onError(err) {
      h.onResponseError?.(c, err);
    },
    onUpgrade(statusCode, rawHeaders, socket) {
      h.onRequestUpgrade?.(c, statusCode, parseRaw(rawHeaders as Buffer[] | null), socket as Duplex);
    },
  };
}

function parseRaw(raw: Array<Buffer | string> | null | undefined): IncomingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  if (!raw) return out;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const k = raw[i]!.toString().toLowerCase();
    const v = raw[i + 1]!.toString();
    const prev = out[k];
    out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return out;
}

function withHeader(headers: Dispatcher.DispatchOptions["headers"], name: string, value: string): Dispatcher.DispatchOptions["headers"] {
  if (headers == null) return { [name]: value };
  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) return [...(headers as unknown as string[][]), [name, value]] as unknown as string[];
    return [...(headers as string[]), name, value];
  }
  if (typeof (headers as Iterable<unknown>)[Symbol.iterator] === "function" && !(typeof headers === "object" && !Array.isArray(headers) && Object.getPrototypeOf(headers) === Object.prototype)) {
    const list: string[] = [];
    for (const [k, v] of headers as Iterable<[string, string | string[] | undefined]>) {
      if (v === undefined) continue;
      for (const x of Array.isArray(v) ? v : [v]) list.push(k, x);
    }
    return [...list, name, value];
  }
  return { ...(headers as Record<string, string | string[] | undefined>), [name]: value } as Dispatcher.DispatchOptions["headers"];
}

function replayable(body: unknown): boolean {
  return body == null || typeof body === "string" || body instanceof Uint8Array;
}

export class GatewayDispatcher extends Dispatcher {
  constructor(private readonly gw: Gateway) {
    super();
  }

  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const h = toOldStyle(handler);
    let service: string;
    try {
      const origin = opts.origin instanceof URL ? opts.origin : new URL(String(opts.origin));
      service = origin.hostname;
    } catch (err) {
      h.onError(err as Error);
      return true;
    }
    new RoutedRequest(this.gw, service, opts, h).start();
    return true;
  }

  override async close(): Promise<void> {
    // Pools belong to the gateway and close with it.
  }

  override async destroy(): Promise<void> {}
}

/** The try in flight of a RoutedRequest, as the caller's abort sees it. */
interface LiveTry {
  /** The caller aborted: settle the try at once (unless the response is already the caller's) and abort undici's request. */
  cancel(reason: Error): void;
}

/** A try's timer in the gateway's shared queue (grace turn and lag extension included). */
class TryTimer extends TryTimerEntry {
  constructor(
    readonly deadlineLeft: () => number,
    private readonly fire: (deadlineBound: boolean) => void,
  ) {
    super();
  }

  onTimeout(): void {
    this.fire(this.deadlineBound);
  }
}

class RoutedRequest {
  private rt: ServiceRuntime | undefined;
  private readonly started = Date.now();
  private readonly deadlineMs: number;
  private readonly idempotent: boolean;
  private readonly canReplay: boolean;
  private readonly exclude = new Set<string>();
  private tries = 0;
  private abortReason: Error | null = null;
  /** The try in flight, if any. */
  private current: LiveTry | null = null;
  /** The backoff before the next try, if waiting. */
  private backoffTimer: ReturnType<typeof setTimeout> | null = null;
  /** The caller's handler got its end (onComplete or onError): nothing more goes to it. */
  private ended = false;
  private lastError: unknown;

  constructor(
    private readonly gw: Gateway,
    private readonly service: string,
    private readonly opts: Dispatcher.DispatchOptions,
    private readonly h: OldHandler,
  ) {
    this.deadlineMs = gw.policy.deadline;
    this.idempotent = isIdempotent(opts.method, opts.idempotent);
    this.canReplay = replayable(opts.body);
  }

  start(): void {
    try {
      this.h.onConnect?.((reason?: Error) => this.callerAbort(reason));
    } catch (err) {
      return this.fail(err);
    }
    if (this.ended) return; // aborted from onConnect
    this.gw.ready(this.service, Math.min(this.gw.policy.snapshotTimeout, this.deadlineMs)).then(
      (rt) => {
        if (this.ended) return;
        this.rt = rt;
        rt.counters.requests++;
        rt.budget.recordRequest(Date.now());
        this.attempt();
      },
      (err) => this.fail(err),
    );
  }

  /** The caller's abort settles the request at once, whatever undici is doing with the try. */
  private callerAbort(reason: Error | undefined): void {
    if (this.abortReason || this.ended) return;
    this.abortReason = reason ?? new RequestAbortedError(this.service);
    if (this.current) return this.current.cancel(this.abortReason);
    this.fail(this.abortReason); // waiting for the catalog or a backoff
  }

  /** Ends the request with an error: the handler's onError, exactly once. */
  private fail(err: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.current = null;
    if (this.backoffTimer) clearTimeout(this.backoffTimer);
    this.backoffTimer = null;
    try {
      this.h.onError(err instanceof Error ? err : new Error(String(err)));
    } catch {
      // a handler that throws from onError has nowhere to report to
    }
  }

  private remaining(): number {
    return this.deadlineMs - (Date.now() - this.started);
  }

  private deadlineError(): DeadlineExceededError {
    return new DeadlineExceededError(this.service, this.deadlineMs, this.tries, { cause: this.lastError });
  }

  private attempt(): void {
    this.backoffTimer = null;
    if (this.ended) return;
    const rt = this.rt!;
    if (this.abortReason) return this.fail(this.abortReason);
    const remaining = this.remaining();
    if (remaining <= 0) return this.fail(this.deadlineError());
    let picked;
    try {
      picked = this.gw.pickFor(rt, undefined, this.exclude);
    } catch (err) {
      return this.fail(err);
    }
    if (!picked.ok) {
      if (this.lastError) return this.fail(this.lastError);
      return this.fail(new NoHealthyUpstreamError(this.service, this.gw.mirror.revision(this.service), picked.reasons));
    }
    const ep = picked.endpoint;
    this.exclude.add(ep.id);
    this.tries++;
    rt.counters.tries++;
    this.tryOn(rt, ep, remaining);
  }

  private backoffThenAttempt(): void {
    const delay = this.gw.backoff(this.tries);
    this.backoffTimer = setTimeout(() => this.attempt(), Math.min(delay, Math.max(0, this.remaining())));
  }

  private retryOrFail(outcome: Outcome, err: unknown): void {
    const rt = this.rt!;
    this.lastError = err;
    const maxRetries = this.canReplay ? this.gw.policy.maxRetries : 0;
    if (this.abortReason) return this.fail(this.abortReason);
    if (!shouldRetry(outcome, this.idempotent) || this.tries > maxRetries) return this.fail(err);
    if (!rt.budget.trySpend(Date.now())) {
      rt.counters.budgetExhausted++;
      return this.fail(new RetryBudgetExhaustedError(this.service, this.tries, { cause: err }));
    }
    rt.counters.retries++;
    this.backoffThenAttempt();
  }

  /** Whether a retryable status may be swallowed and retried (decided before the caller sees anything). */
  private wouldRetryStatus(statusCode: number): boolean {
    const rt = this.rt!;
    const maxRetries = this.canReplay ? this.gw.policy.maxRetries : 0;
    if (this.abortReason || !this.idempotent || this.tries > maxRetries || this.remaining() <= 0) return false;
    if (!isRetryable({ kind: "failure", reason: "status", statusCode, latencyMs: 0 })) return false;
    if (!rt.budget.trySpend(Date.now())) {
      rt.counters.budgetExhausted++;
      return false;
    }
    return true;
  }

  /**
   * One try on `ep`. Its timer (the try timeout, or the deadline when that comes first) and
   * the caller's abort settle the try at once — report, then retry or fail — and abort
   * undici's request: undici settles an aborted request only once it is dispatched, and one
   * waiting in the Pool for a connection (every connection busy, or connects stuck behind a
   * hung instance) would otherwise hold the caller until then. Whatever undici says about an
   * abandoned try afterwards is ignored.
   */
  private tryOn(rt: ServiceRuntime, ep: Endpoint, remaining: number): void {
    const deadlineBound = remaining <= this.gw.policy.tryTimeout;
    const timeoutMs = Math.max(1, Math.min(this.gw.policy.tryTimeout, remaining));
    const t0 = performance.now();
    let abortTry: ((err?: Error) => void) | null = null;
    /** Why the gateway abandoned the try (settled before undici did); undici's later callbacks are ignored. */
    let dropped: Error | null = null;
    let reported = false;
    let forwarded = false;
    let swallowing = false;
    const report = (o: Outcome): void => {
      if (reported) return;
      reported = true;
      rt.balancer.onResult(ep.id, o, Date.now());
      if (o.kind === "success") rt.hedge.recordLatency(o.latencyMs, Date.now());
    };
    const timeouts = this.gw.timeouts;
    const done = (): void => {
      timeouts.remove(timer);
      if (this.current === live) this.current = null;
    };
    /** Settles the try now, then aborts undici's request (now if dispatched, else when undici dispatches it). */
    const drop = (reason: Error, outcome: Outcome): void => {
      dropped = reason;
      done();
      report(outcome);
      abortTry?.(reason);
    };
    const live: LiveTry = {
      cancel: (reason) => {
        if (dropped) return;
        if (forwarded) {
          // The caller has the response: undici ends it (onError below forwards the error).
          abortTry?.(reason);
          return;
        }
        drop(reason, { kind: "cancelled", latencyMs: performance.now() - t0 });
        this.fail(reason);
      },
    };
    this.current = live;
    const timer = new TryTimer(
      () => this.remaining(),
      (atDeadline) => {
        if (dropped || forwarded || swallowing) return;
        const timedOut = new TryTimeoutError(this.service, ep.id, timeoutMs);
        const outcome: Outcome = { kind: "failure", reason: "timeout", latencyMs: performance.now() - t0 };
        drop(timedOut, outcome);
        if (atDeadline) {
          this.lastError = timedOut;
          return this.fail(this.deadlineError());
        }
        this.retryOrFail(outcome, timedOut);
      },
    );
    timer.deadlineBound = deadlineBound;
    timeouts.add(timer, timeoutMs, t0);
    rt.balancer.onStart(ep.id, Date.now());
    const tryHandler: Dispatcher.DispatchHandler = {
      onConnect: (abort) => {
        abortTry = abort;
        if (dropped) abort(dropped);
      },
      onUpgrade: (statusCode, headers, socket) => {
        if (dropped) return void socket.destroy();
        done();
        forwarded = true;
        report({ kind: "success", latencyMs: performance.now() - t0 });
        this.ended = true;
        this.h.onUpgrade?.(statusCode, headers, socket);
      },
      onResponseStarted: () => {
        if (!dropped && !swallowing) this.h.onResponseStarted?.();
      },
      onHeaders: (statusCode, rawHeaders, resume, statusText) => {
        if (dropped) {
          abortTry?.(dropped);
          return false;
        }
        if (statusCode < 200) return forwarded || swallowing ? true : (this.h.onHeaders?.(statusCode, rawHeaders, resume, statusText) ?? true);
        timeouts.remove(timer);
        const latencyMs = performance.now() - t0;
        if (RETRYABLE_STATUS.has(statusCode) && this.wouldRetryStatus(statusCode)) {
          report({ kind: "failure", reason: "status", statusCode, latencyMs });
          swallowing = true;
          return true;
        }
        if (statusCode >= 500) report({ kind: "failure", reason: "status", statusCode, latencyMs });
        else report({ kind: "success", latencyMs });
        forwarded = true;
        return this.h.onHeaders?.(statusCode, rawHeaders, resume, statusText) ?? true;
      },
      onData: (chunk) => {
        if (dropped) return false;
        if (swallowing) return true;
        return this.h.onData?.(chunk) ?? true;
      },
      onComplete: (trailers) => {
        if (dropped) return;
        done();
        if (swallowing) {
          this.lastError = new Error(`retryable status from ${ep.id}`);
          rt.counters.retries++;
          return this.backoffThenAttempt();
        }
        if (this.ended) return;
        this.ended = true;
        this.h.onComplete?.(trailers);
      },
      onError: (err) => {
        if (dropped) return;
        done();
        const latencyMs = performance.now() - t0;
        if (forwarded) {
          // The caller already has the response: a mid-body failure is theirs to see.
          return this.fail(err);
        }
        let outcome: Outcome;
        let error: unknown = err;
        if (this.abortReason) {
          outcome = { kind: "cancelled", latencyMs };
          error = this.abortReason;
        } else {
          outcome = { kind: "failure", reason: classifyError(err), latencyMs };
          error = new UpstreamError(this.service, ep.id, outcome.reason, this.tries, { cause: err });
        }
        report(outcome);
        if (swallowing) {
          // The swallowed 5xx body failed: retry anyway (budget already spent).
          rt.counters.retries++;
          return this.attempt();
        }
        this.retryOrFail(outcome, error);
      },
    };
    try {
      this.gw.pool(ep).dispatch(
        { ...this.opts, origin: originOf(ep), headers: withHeader(this.opts.headers, DEADLINE_HEADER, String(Math.max(1, Math.floor(remaining)))) },
        tryHandler,
      );
    } catch (err) {
      tryHandler.onError?.(err as Error);
    }
  }
}

function originOf(ep: Endpoint): string {
  const host = ep.address.includes(":") && !ep.address.startsWith("[") ? `[${ep.address}]` : ep.address;
  return `http://${host}:${ep.port}`;
}

