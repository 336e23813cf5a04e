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
import { AsyncResource as AR } from "node:async_hooks";
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

/** undici parsed the headers as latin1; this gives the handler the same bytes back. */
function toRaw(headers: Record<string, string | string[] | undefined> | null | undefined): Buffer[] {
  const out: Buffer[] = [];
  if (!headers) return out;
  for (const k in headers) {
    const v = headers[k];
    if (v === undefined) continue;
    const name = Buffer.from(k, "latin1");
    if (Array.isArray(v)) for (const x of v) out.push(name, Buffer.from(x, "latin1"));
    else out.push(name, Buffer.from(v, "latin1"));
  }
  return out;
}

/** Any header form undici accepts (object, flat array, array of pairs, iterable) as a record. */
function toRecord(headers: Dispatcher.DispatchOptions["headers"]): Record<string, string | string[]> | undefined {
  if (headers == null) return undefined;
  const out: Record<string, string | string[]> = {};
  const put = (k: string, v: string | string[] | undefined): void => {
    if (v === undefined) return;
    const key = k.toLowerCase();
    const prev = out[key];
    if (prev === undefined) out[key] = v;
    else out[key] = ([] as string[]).concat(prev, v);
  };
  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) for (const [k, v] of headers as unknown as Array<[string, string]>) put(k, v);
    else for (let i = 0; i + 1 < headers.length; i += 2) put(String(headers[i]), String(headers[i + 1]));
    return out;
  }
  if (typeof (headers as Iterable<unknown>)[Symbol.iterator] === "function" && Object.getPrototypeOf(headers) !== Object.prototype) {
    for (const [k, v] of headers as Iterable<[string, string | string[] | undefined]>) put(k, v);
    return out;
  }
  for (const k in headers as Record<string, string | string[] | undefined>) put(k, (headers as Record<string, string | string[] | undefined>)[k]);
  return out;
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
      const origin = opts.origin instanceof URL ? opts.origin : new URL(String(opts.origin));
      service = origin.hostname;
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

/** One dispatched request: the engine's result streamed into the caller's handler. */
class Forwarder {
  /** The handler got its end (onComplete or onError): nothing more goes to it. */
  private ended = false;
  private body: Readable | undefined = undefined;
  private readonly control: { abort?: (reason: Error) => void } = {};
  /** The caller's async context: body events come from the socket's. */
  private readonly ctx: AsyncResource = new AR("roster.gateway.dispatch");

  constructor(
    private readonly engine: Engine,
    private readonly service: string,
    private readonly opts: Dispatcher.DispatchOptions,
    private readonly h: OldHandler,
  ) {}

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

  private fail(err: unknown): void {
    if (this.ended) return;
    this.ended = true;
    try {
      this.h.onError(err instanceof Error ? err : new Error(String(err)));
    } catch {
      // a handler that throws from onError has nowhere to report to
    }
  }

  private forward(res: Dispatcher.ResponseData): void {
    const body = res.body as unknown as Readable;
    if (this.ended) {
      body.destroy();
      return;
    }
    this.body = body;
    const h = this.h;
    const ctx = this.ctx;
    let flowing: boolean;
    try {
      h.onResponseStarted?.();
      flowing = h.onHeaders?.(res.statusCode, toRaw(res.headers as Record<string, string | string[]>), () => body.resume(), (res as { statusText?: string }).statusText ?? "") !== false;
    } catch (err) {
      body.destroy(err as Error);
      return this.fail(err);
    }
    body.on("data", (chunk: Buffer) => {
      if (this.ended) return;
      ctx.runInAsyncScope(() => {
        try {
          if (h.onData?.(chunk) === false) body.pause();
        } catch (err) {
          body.destroy(err as Error);
        }
      });
    });
    body.on("end", () => {
      if (this.ended) return;
      this.ended = true;
      ctx.runInAsyncScope(() => h.onComplete?.(toRaw(res.trailers as Record<string, string | string[]>) as unknown as string[]));
    });
    body.on("error", (err: Error) => ctx.runInAsyncScope(() => this.fail(err)));
    // Destroyed without an error (the gateway closing): the handler still hears the end.
    body.on("close", () => {
      if (!this.ended) ctx.runInAsyncScope(() => this.fail(new RequestAbortedError(this.service)));
    });
    if (!flowing) body.pause();
  }
}
