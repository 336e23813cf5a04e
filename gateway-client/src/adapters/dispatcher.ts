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

class RoutedRequest {
  private rt: ServiceRuntime | undefined;
  private readonly started = Date.now();
  private readonly deadlineMs: number;
  private readonly idempotent: boolean;
  private readonly canReplay: boolean;
  private readonly exclude = new Set<string>();
  private tries = 0;
  private abortReason: Error | null = null;
  private currentAbort: ((err?: Error) => void) | null = null;
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
      this.h.onConnect?.((reason?: Error) => {
        if (this.abortReason) return;
        this.abortReason = reason ?? new RequestAbortedError(this.service);
        this.currentAbort?.(this.abortReason);
      });
    } catch (err) {
      return this.fail(err);
    }
    this.gw.ready(this.service, Math.min(this.gw.policy.snapshotTimeout, this.deadlineMs)).then(
      (rt) => {
        this.rt = rt;
        rt.counters.requests++;
        rt.budget.recordRequest(Date.now());
        this.attempt();
      },
      (err) => this.fail(err),
    );
  }

  private fail(err: unknown): void {
    try {
      this.h.onError(err instanceof Error ? err : new Error(String(err)));
    } catch {
      // a handler that throws from onError has nowhere to report to
    }
  }

  private remaining(): number {
    return this.deadlineMs - (Date.now() - this.started);
  }

  private attempt(): void {
    const rt = this.rt!;
    if (this.abortReason) return this.fail(this.abortReason);
    const remaining = this.remaining();
    if (remaining <= 0) return this.fail(new DeadlineExceededError(this.service, this.deadlineMs, this.tries, { cause: this.lastError }));
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
    const delay = this.gw.backoff(this.tries);
    setTimeout(() => this.attempt(), Math.min(delay, Math.max(0, this.remaining())));
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

  private tryOn(rt: ServiceRuntime, ep: Endpoint, remaining: number): void {
    const timeoutMs = Math.max(1, Math.min(this.gw.policy.tryTimeout, remaining));
    const t0 = performance.now();
    let timedOut: TryTimeoutError | null = null;
    let abortTry: ((err?: Error) => void) | null = null;
    let reported = false;
    let forwarded = false;
    let swallowing = false;
    const report = (o: Outcome): void => {
      if (reported) return;
      reported = true;
      rt.balancer.onResult(ep.id, o, Date.now());
      if (o.kind === "success") rt.hedge.recordLatency(o.latencyMs, Date.now());
    };
    const timer = setTimeout(() => {
      timedOut = new TryTimeoutError(this.service, ep.id, timeoutMs);
      abortTry?.(timedOut);
    }, timeoutMs);
    rt.balancer.onStart(ep.id, Date.now());
    const done = (): void => {
      clearTimeout(timer);
      if (this.currentAbort === abortTry) this.currentAbort = null;
    };
    const tryHandler: Dispatcher.DispatchHandler = {
      onConnect: (abort) => {
        abortTry = abort;
        this.currentAbort = abort;
        if (this.abortReason) abort(this.abortReason);
        else if (timedOut) abort(timedOut);
      },
      onUpgrade: (statusCode, headers, socket) => {
        done();
        forwarded = true;
        report({ kind: "success", latencyMs: performance.now() - t0 });
        this.h.onUpgrade?.(statusCode, headers, socket);
      },
      onResponseStarted: () => {
        if (!swallowing) this.h.onResponseStarted?.();
      },
      onHeaders: (statusCode, rawHeaders, resume, statusText) => {
        if (statusCode < 200) return forwarded || swallowing ? true : (this.h.onHeaders?.(statusCode, rawHeaders, resume, statusText) ?? true);
        clearTimeout(timer);
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
        if (swallowing) return true;
        return this.h.onData?.(chunk) ?? true;
      },
      onComplete: (trailers) => {
        done();
        if (swallowing) {
          this.lastError = new Error(`retryable status from ${ep.id}`);
          rt.counters.retries++;
          const delay = this.gw.backoff(this.tries);
          setTimeout(() => this.attempt(), Math.min(delay, Math.max(0, this.remaining())));
          return;
        }
        this.h.onComplete?.(trailers);
      },
      onError: (err) => {
        done();
        const latencyMs = performance.now() - t0;
        if (forwarded) {
          // The caller already has the response: a mid-body failure is theirs to see.
          return this.fail(err);
        }
        let outcome: Outcome;
        let error: unknown = err;
        if (timedOut) {
          outcome = { kind: "failure", reason: "timeout", latencyMs };
          error = timedOut;
        } else if (this.abortReason) {
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

