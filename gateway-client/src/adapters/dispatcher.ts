// An undici Dispatcher that routes through the catalog: the origin's host name is the
// service (`fetch("http://orders/x", { dispatcher: gw.dispatcher })`). A thin front-end over
// the gateway's request engine (adapters/engine.ts), the same one `gw.request()` uses: the
// concurrency cap and queue, retries, budget, hedging, deadline and outcome feedback are the
// engine's, so both front-ends behave the same. The engine resolves with undici's
// ResponseData once a try's response is the one to return; this front-end then streams it
// into the caller's handler (fetch's, undici.request's), with backpressure, in the caller's
// async context.
import { Dispatcher } from "undici";
import type { IncomingHttpHeaders } from "node:http";
import type { Duplex, Readable } from "node:stream";
import type { AsyncResource } from "node:async_hooks";
import type { Engine, RequestOptions } from "./engine.js";
import { RequestAbortedError } from "../errors.js";

type OldHandler = Required<Pick<Dispatcher.DispatchHandler, "onError">> & Dispatcher.DispatchHandler;

/**
 * The type `fetch`'s `dispatcher` option has where the caller compiles (the `undici-types`
 * bundled with @types/node of any version, or none): the gateway's dispatcher is given that
 * type too, so `fetch(url, { dispatcher: gw.dispatcher })` type-checks against Node's global
 * fetch as well as undici's own.
 */
export type FetchDispatcher = globalThis.RequestInit extends { dispatcher?: infer D } ? NonNullable<D> : unknown;

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

/** Header names as bytes, made once: the same few names come back on every response. */
const rawNames = new Map<string, Buffer>();
const MAX_RAW_NAMES = 512;

function rawName(k: string): Buffer {
  let b = rawNames.get(k);
  if (b === undefined) {
    b = Buffer.from(k, "latin1");
    if (rawNames.size < MAX_RAW_NAMES) rawNames.set(k, b); // names a hostile upstream invents are not kept beyond the cap
  }
  return b;
}

/** undici parsed the headers as latin1; this gives the handler the same bytes back (names shared between responses: handlers read them). */
function toRaw(headers: Record<string, string | string[] | undefined> | null | undefined): Buffer[] {
  const out: Buffer[] = [];
  if (!headers) return out;
  for (const k in headers) {
    const v = headers[k];
    if (v === undefined) continue;
    const name = rawName(k);
    if (Array.isArray(v)) for (const x of v) out.push(name, Buffer.from(x, "latin1"));
    else out.push(name, Buffer.from(v, "latin1"));
  }
  return out;
}

/** Services of the origins seen: fetch passes `url.origin` as a string, and parsing it per request costs a URL. */
const serviceOfOrigin = new Map<string, string>();
const MAX_ORIGINS = 1024;

/** The service an origin names (its host name); throws on an origin that is not a URL. */
function serviceOf(origin: string | URL | undefined): string {
  if (origin instanceof URL) return origin.hostname;
  const key = String(origin);
  let service = serviceOfOrigin.get(key);
  if (service === undefined) {
    service = new URL(key).hostname;
    if (serviceOfOrigin.size >= MAX_ORIGINS) serviceOfOrigin.clear();
    serviceOfOrigin.set(key, service);
  }
  return service;
}

/** Any header form undici accepts (object, flat array, array of pairs, iterable) as a record. */
function toRecord(headers: Dispatcher.DispatchOptions["headers"]): Record<string, string | string[]> | undefined {
  if (headers == null) return undefined;
  const out: Record<string, string | string[]> = {};
  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) for (const [k, v] of headers as unknown as Array<[string, string]>) putHeader(out, k, v);
    else for (let i = 0; i + 1 < headers.length; i += 2) putHeader(out, String(headers[i]), String(headers[i + 1]));
    return out;
  }
  if (typeof (headers as Iterable<unknown>)[Symbol.iterator] === "function" && Object.getPrototypeOf(headers) !== Object.prototype) {
    for (const [k, v] of headers as Iterable<[string, string | string[] | undefined]>) putHeader(out, k, v);
    return out;
  }
  for (const k in headers as Record<string, string | string[] | undefined>) putHeader(out, k, (headers as Record<string, string | string[] | undefined>)[k]);
  return out;
}

function putHeader(out: Record<string, string | string[]>, k: string, v: string | string[] | undefined): void {
  if (v === undefined) return;
  const key = k.toLowerCase();
  const prev = out[key];
  if (prev === undefined) out[key] = v;
  else out[key] = ([] as string[]).concat(prev, v);
}

export class GatewayDispatcher extends Dispatcher {
  /** @internal */
  constructor(private readonly gw: { readonly engine: Engine; readonly options: { deadline: number } }) {
    super();
  }

  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const h = toOldStyle(handler);
    let service: string;
    try {
      service = serviceOf(opts.origin);
    } catch (err) {
      h.onError(err as Error);
      return true;
    }
    new Forwarder(this.gw.engine, service, opts, h).start();
    return true;
  }

  override async close(): Promise<void> {
    // Pools belong to the gateway and close with it.
  }

  override async destroy(): Promise<void> {}
}

const kForwarder = Symbol("roster.forwarder");

/** Body listeners, shared by every response: the forwarder is found on the body (no closures per request). */
function onBodyData(this: Readable, chunk: Buffer): void {
  const f = (this as unknown as Record<symbol, Forwarder>)[kForwarder]!;
  if (!f.ended) f.ctx!.runInAsyncScope(f.data, f, chunk);
}
function onBodyEnd(this: Readable): void {
  const f = (this as unknown as Record<symbol, Forwarder>)[kForwarder]!;
  if (!f.ended) f.ctx!.runInAsyncScope(f.complete, f);
}
function onBodyError(this: Readable, err: Error): void {
  const f = (this as unknown as Record<symbol, Forwarder>)[kForwarder]!;
  f.ctx!.runInAsyncScope(f.fail, f, err);
}
/** Destroyed without an error (the gateway closing): the handler still hears the end. */
function onBodyClose(this: Readable): void {
  const f = (this as unknown as Record<symbol, Forwarder>)[kForwarder]!;
  if (!f.ended) f.ctx!.runInAsyncScope(f.fail, f, new RequestAbortedError(f.service));
}

/** One dispatched request: the engine's result streamed into the caller's handler. */
class Forwarder {
  /** The handler got its end (onComplete or onError): nothing more goes to it. */
  ended = false;
  private body: Readable | undefined = undefined;
  private trailers: Dispatcher.ResponseData["trailers"] | undefined = undefined;
  /**
   * What the engine gives back: the request's abort, and its AsyncResource (the caller's async
   * context, captured when the request started; body events come from the socket's).
   */
  private readonly control: { abort?: (reason: Error) => void; ctx?: AsyncResource } = {};

  constructor(
    private readonly engine: Engine,
    readonly service: string,
    private readonly opts: Dispatcher.DispatchOptions,
    private readonly h: OldHandler,
  ) {}

  get ctx(): AsyncResource | undefined {
    return this.control.ctx;
  }

  start(): void {
    try {
      this.h.onConnect?.((reason?: Error) => this.callerAbort(reason));
    } catch (err) {
      return this.fail(err);
    }
    if (this.ended) return; // aborted from onConnect
    const o = this.opts;
    if (o.upgrade) return this.fail(new Error("the gateway dispatcher does not forward upgrades (CONNECT, WebSocket)"));
    const req: RequestOptions = {
      method: o.method,
      path: o.path,
      headers: toRecord(o.headers),
      body: o.body as RequestOptions["body"],
      idempotent: o.idempotent,
    };
    this.engine.request(this.service, req, this.control).then(
      (res) => this.forward(res),
      (err: unknown) => this.fail(err),
    );
  }

  /** The caller's abort: the engine ends the request (tries, wait, backoff); a flowing body is destroyed. */
  private callerAbort(reason: Error | undefined): void {
    if (this.ended) return;
    const why = reason ?? new RequestAbortedError(this.service);
    if (this.body) {
      this.body.destroy(why);
      return;
    }
    if (this.control.abort) this.control.abort(why);
    else this.fail(why);
  }

  fail(err: unknown): void {
    if (this.ended) return;
    this.ended = true;
    try {
      this.h.onError(err instanceof Error ? err : new Error(String(err)));
    } catch {
      // a handler that throws from onError has nowhere to report to
    }
  }

  /** A chunk of the body (in the caller's context). */
  data(chunk: Buffer): void {
    try {
      if (this.h.onData?.(chunk) === false) this.body!.pause();
    } catch (err) {
      this.body!.destroy(err as Error);
    }
  }

  /** The body ended (in the caller's context). */
  complete(): void {
    this.ended = true;
    this.h.onComplete?.(toRaw(this.trailers as Record<string, string | string[]>) as unknown as string[]);
  }

  private forward(res: Dispatcher.ResponseData): void {
    const body = res.body as unknown as Readable;
    if (this.ended) {
      body.destroy();
      return;
    }
    this.body = body;
    this.trailers = res.trailers;
    const h = this.h;
    let flowing: boolean;
    try {
      h.onResponseStarted?.();
      flowing = h.onHeaders?.(res.statusCode, toRaw(res.headers as Record<string, string | string[]>), () => body.resume(), (res as { statusText?: string }).statusText ?? "") !== false;
    } catch (err) {
      body.destroy(err as Error);
      return this.fail(err);
    }
    (body as unknown as Record<symbol, Forwarder>)[kForwarder] = this;
    body.on("data", onBodyData);
    body.on("end", onBodyEnd);
    body.on("error", onBodyError);
    body.on("close", onBodyClose);
    if (!flowing) body.pause();
  }
}
