// Tracing of the request path, for two audiences: OpenTelemetry (when `@opentelemetry/api` is
// installed and a tracer provider is registered) and `node:diagnostics_channel` (a
// TracingChannel `roster:gateway:request` and a channel per try, for APMs and tests that do
// not use OpenTelemetry). The engine asks `begin()` once per request; it returns undefined —
// and the request path then costs one property check per try — unless someone listens.
// `@opentelemetry/api` is an optional peer dependency: it is loaded with a dynamic import, so
// a process without it never resolves it.
import diagnostics_channel from "node:diagnostics_channel";
import type { Endpoint, Outcome } from "../core/types.js";

export type TryKind = "first" | "retry" | "hedge";
export type TraceEvent = "ejection" | "budget-refused" | "panic";

/** One request's trace (the engine's side). */
export interface RequestTrace {
  tryStart(ep: Endpoint, attempt: number, kind: TryKind): TryTrace;
  event(name: TraceEvent, attrs?: Record<string, string | number | boolean>): void;
  /** The request is over: `status` when it returned a response, else `err`. */
  end(status: number | undefined, err: unknown): void;
}

export interface TryTrace {
  /** W3C traceparent for this try's request headers, when a span context exists. */
  readonly traceparent: string | undefined;
  end(outcome: Outcome, status: number | undefined): void;
}

/** Context published on the `roster:gateway:request` tracing channel (start, asyncEnd or error). */
export interface RequestChannelMessage {
  service: string;
  method: string;
  path: string;
  statusCode?: number;
  error?: unknown;
  /** Tries made, when over. */
  tries?: number;
}

/** Published on `roster:gateway:try:start` and `roster:gateway:try:end`. */
export interface TryChannelMessage {
  service: string;
  method: string;
  path: string;
  instanceId: string;
  address: string;
  port: number;
  attempt: number;
  kind: TryKind;
  outcome?: Outcome["kind"];
  reason?: string;
  statusCode?: number;
}

export const REQUEST_CHANNEL = "roster:gateway:request";
export const TRY_START_CHANNEL = "roster:gateway:try:start";
export const TRY_END_CHANNEL = "roster:gateway:try:end";

const requestChannel = diagnostics_channel.tracingChannel<RequestChannelMessage>(REQUEST_CHANNEL);
const tryStartChannel = diagnostics_channel.channel(TRY_START_CHANNEL);
const tryEndChannel = diagnostics_channel.channel(TRY_END_CHANNEL);

/** The attributes of a try's outcome (shared by both tracers). */
function outcomeWord(o: Outcome): string {
  return o.kind === "failure" ? o.reason : o.kind;
}

// ---------------------------------------------------------------------------------------
// diagnostics_channel

class ChannelRequestTrace implements RequestTrace {
  private tries = 0;
  constructor(private readonly msg: RequestChannelMessage) {
    // As TracingChannel.tracePromise: start and end around the synchronous part, then the settlement.
    requestChannel.start.publish(msg);
    requestChannel.end.publish(msg);
  }
  tryStart(ep: Endpoint, attempt: number, kind: TryKind): TryTrace {
    this.tries = attempt;
    const m: TryChannelMessage = { service: this.msg.service, method: this.msg.method, path: this.msg.path, instanceId: ep.id, address: ep.address, port: ep.port, attempt, kind };
    if (tryStartChannel.hasSubscribers) tryStartChannel.publish(m);
    return {
      traceparent: undefined,
      end(outcome, status) {
        if (!tryEndChannel.hasSubscribers) return;
        m.outcome = outcome.kind;
        m.reason = outcomeWord(outcome);
        if (status !== undefined) m.statusCode = status;
        tryEndChannel.publish(m);
      },
    };
  }
  event(): void {}
  end(status: number | undefined, err: unknown): void {
    const msg = this.msg;
    msg.tries = this.tries;
    if (status !== undefined) msg.statusCode = status;
    else {
      msg.error = err;
      requestChannel.error.publish(msg);
    }
    requestChannel.asyncStart.publish(msg);
    requestChannel.asyncEnd.publish(msg);
  }
}

function channelsListened(): boolean {
  return requestChannel.start.hasSubscribers || tryStartChannel.hasSubscribers || tryEndChannel.hasSubscribers;
}

// ---------------------------------------------------------------------------------------
// OpenTelemetry (types kept local: the package must not need @opentelemetry/api to compile against)

interface OtelSpanContext {
  traceId: string;
  spanId: string;
  traceFlags: number;
  traceState?: { serialize(): string };
}
interface OtelSpan {
  spanContext(): OtelSpanContext;
  setAttribute(k: string, v: string | number | boolean): unknown;
  setAttributes(a: Record<string, string | number | boolean>): unknown;
  addEvent(name: string, attrs?: Record<string, string | number | boolean>): unknown;
  setStatus(s: { code: number; message?: string }): unknown;
  recordException(e: unknown): unknown;
  end(): void;
}
interface OtelTracer {
  startSpan(name: string, options?: { kind?: number; attributes?: Record<string, string | number | boolean> }, context?: unknown): OtelSpan;
}
/** A TracerProvider, as `@opentelemetry/api` defines it (the `tracing.tracerProvider` option). */
export interface TracerProviderLike {
  getTracer(name: string, version?: string): unknown;
}
interface OtelApi {
  trace: {
    getTracerProvider(): TracerProviderLike & { getDelegate?(): unknown };
    setSpan(ctx: unknown, span: OtelSpan): unknown;
  };
  context: { active(): unknown };
  SpanKind: { CLIENT: number };
  SpanStatusCode: { ERROR: number };
}

const TRACER_NAME = "roster-gateway-client";
const TRACER_VERSION = "0.1.0";

function traceparentOf(sc: OtelSpanContext): string {
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, "0")}`;
}

class OtelRequestTrace implements RequestTrace {
  private readonly span: OtelSpan;
  private readonly ctx: unknown;
  constructor(
    private readonly api: OtelApi,
    private readonly tracer: OtelTracer,
    private readonly service: string,
    private readonly method: string,
    private readonly path: string,
  ) {
    const parent = api.context.active();
    this.span = tracer.startSpan(
      `${method} ${service}`,
      { kind: api.SpanKind.CLIENT, attributes: { "roster.service": service, "http.request.method": method, "url.path": path } },
      parent,
    );
    this.ctx = api.trace.setSpan(parent, this.span);
  }

  tryStart(ep: Endpoint, attempt: number, kind: TryKind): TryTrace {
    const api = this.api;
    const span = this.tracer.startSpan(
      `${this.method} ${this.service} try`,
      {
        kind: api.SpanKind.CLIENT,
        attributes: {
          "roster.service": this.service,
          "roster.instance.id": ep.id,
          "server.address": ep.address,
          "server.port": ep.port,
          "roster.attempt": attempt,
          "roster.try.kind": kind,
          "http.request.method": this.method,
          "http.request.resend_count": attempt - 1,
        },
      },
      this.ctx,
    );
    const sc = span.spanContext();
    let tp: string | undefined = traceparentOf(sc);
    if (/^0+$/.test(sc.traceId)) tp = undefined; // no valid context: nothing to propagate
    return {
      traceparent: tp,
      end(outcome, status) {
        span.setAttribute("roster.outcome", outcomeWord(outcome));
        if (status !== undefined) span.setAttribute("http.response.status_code", status);
        if (outcome.kind === "failure") span.setStatus({ code: api.SpanStatusCode.ERROR, message: outcomeWord(outcome) });
        span.end();
      },
    };
  }

  event(name: TraceEvent, attrs?: Record<string, string | number | boolean>): void {
    this.span.addEvent(`roster.${name}`, attrs);
  }

  end(status: number | undefined, err: unknown): void {
    if (status !== undefined) {
      this.span.setAttribute("http.response.status_code", status);
      if (status >= 500) this.span.setStatus({ code: this.api.SpanStatusCode.ERROR });
    } else {
      this.span.recordException(err instanceof Error ? err : new Error(String(err)));
      const code = (err as { code?: unknown } | null)?.code;
      if (typeof code === "string") this.span.setAttribute("error.type", code);
      this.span.setStatus({ code: this.api.SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
    }
    this.span.end();
  }
}

/** Both at once (rare: OpenTelemetry on and a diagnostics_channel subscriber). */
class BothTrace implements RequestTrace {
  constructor(
    private readonly a: RequestTrace,
    private readonly b: RequestTrace,
  ) {}
  tryStart(ep: Endpoint, attempt: number, kind: TryKind): TryTrace {
    const x = this.a.tryStart(ep, attempt, kind);
    const y = this.b.tryStart(ep, attempt, kind);
    return {
      traceparent: x.traceparent ?? y.traceparent,
      end(o, s) {
        x.end(o, s);
        y.end(o, s);
      },
    };
  }
  event(n: TraceEvent, attrs?: Record<string, string | number | boolean>): void {
    this.a.event(n, attrs);
    this.b.event(n, attrs);
  }
  end(s: number | undefined, e: unknown): void {
    this.a.end(s, e);
    this.b.end(s, e);
  }
}

/** Recheck of the global tracer provider (a provider registered after the gateway was made is picked up within this). */
const PROVIDER_RECHECK_MS = 1000;

/** The gateway's tracer: decides per request whether anyone listens. */
export class Tracing {
  private otelOn = false;
  private nextCheck = 0;
  private readonly tracer: OtelTracer | undefined;

  private constructor(
    private readonly api: OtelApi | undefined,
    private readonly provider: TracerProviderLike | undefined,
  ) {
    if (api) this.tracer = (provider ?? api.trace.getTracerProvider()).getTracer(TRACER_NAME, TRACER_VERSION) as OtelTracer;
    if (provider && api) this.otelOn = true;
  }

  /**
   * `enabled: false` turns OpenTelemetry off (diagnostics_channel stays). Otherwise
   * `@opentelemetry/api` is imported if installed; with no provider given, the global one is
   * used once something is registered there.
   */
  static async load(opts: { enabled?: boolean; tracerProvider?: TracerProviderLike } = {}): Promise<Tracing> {
    if (opts.enabled === false) return new Tracing(undefined, undefined);
    let api: OtelApi | undefined;
    try {
      const spec = "@opentelemetry/api"; // a variable: bundlers and tsc leave the optional import alone
      api = (await import(spec)) as OtelApi;
    } catch {
      api = undefined;
    }
    return new Tracing(api, opts.tracerProvider);
  }

  /** True when OpenTelemetry could trace (the API is installed). */
  get otelAvailable(): boolean {
    return this.api !== undefined;
  }

  private otelActive(now: number): boolean {
    if (this.provider || this.api === undefined) return this.otelOn;
    if (now >= this.nextCheck) {
      this.nextCheck = now + PROVIDER_RECHECK_MS;
      const global = this.api.trace.getTracerProvider();
      const delegate = typeof global.getDelegate === "function" ? global.getDelegate() : global;
      this.otelOn = (delegate as { constructor?: { name?: string } } | null)?.constructor?.name !== "NoopTracerProvider";
    }
    return this.otelOn;
  }

  /** A trace for a request starting now, or undefined when nobody listens (the common case: nil cost). */
  begin(service: string, method: string, path: string, now: number): RequestTrace | undefined {
    const otel = this.otelActive(now) ? new OtelRequestTrace(this.api!, this.tracer!, service, method, path) : undefined;
    if (!channelsListened()) return otel;
    const dc = new ChannelRequestTrace({ service, method, path });
    return otel ? new BothTrace(otel, dc) : dc;
  }
}
