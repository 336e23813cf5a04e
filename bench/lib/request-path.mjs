// What the request-path benches share (gateway-throughput, gateway-fetch, gateway-profile,
// gateway-overhead, gateway-instructions): the raw Pool's options, a stubbed Pool, and the raw
// Pool carrying what every gateway try carries. Needs `npm run build` (the gateway's AbortHandle).
import { Readable } from "node:stream";
import { Pool } from "undici";
import { DEADLINE_HEADER } from "roster-gateway-client";
import { AbortHandle } from "../../gateway-client/dist/src/adapters/timeouts.js";

/** The options the gateway gives each endpoint's pool (`parsePolicy({}).pool`): a raw Pool compared with it gets exactly these. */
export function gatewayPoolOptions(parsePolicy) {
  const po = parsePolicy({}).pool;
  return { connections: po.connections, keepAliveTimeout: po.keepAliveTimeout, connect: { timeout: po.connectTimeout } };
}

/**
 * Replaces undici's Pool.prototype.request with a stub that answers on the next microtask (callback
 * or promise form) with an already-closed body, so what is measured is the request path itself.
 * One closed body for every answer: a body made and destroyed per request queues its 'close' on
 * process.nextTick, and a closed loop runs entirely in microtasks, so those would pile up (hundreds
 * of MB, a heap that grows each round) and the rows would time the GC. Closed: the gateway releases
 * the request at once, as it does when a body closes.
 */
export function stubPoolRequest() {
  const body = new Readable({ read() {} });
  body.destroy();
  const answer = () => ({ statusCode: 200, headers: {}, trailers: {}, opaque: null, context: {}, body });
  Pool.prototype.request = function (_opts, cb) {
    if (cb === undefined) return new Promise((resolve) => globalThis.queueMicrotask(() => resolve(answer())));
    globalThis.queueMicrotask(() => cb(null, answer()));
  };
}

/**
 * Replaces undici's Pool.prototype.dispatch with a stub that answers each request on the next
 * macrotask (setImmediate: the body's 'close' is a nextTick, which must run between requests):
 * onConnect, then 200 with no headers, then the end of an empty body, through the handler it was
 * given. undici's request() above it is real — its RequestHandler, the ResponseData, the body
 * stream — so this isolates what a client does on top of undici's request() (the gateway's own
 * code, an abort signal or a forwarding handler) from the network and undici's Client (which
 * validates and writes the headers: a header's cost does not show here).
 */
export function stubPoolDispatch() {
  Pool.prototype.dispatch = function (_opts, handler) {
    globalThis.setImmediate(() => {
      let aborted = null;
      handler.onConnect((err) => (aborted = err ?? new Error("aborted")));
      if (aborted) return handler.onError(aborted);
      handler.onHeaders(200, [], () => {}, "OK");
      handler.onComplete([]);
    });
    return true;
  };
}

/**
 * One request each on the raw `pool`: alone (`pool`), with an abort source undici listens to
 * (`pool-signal`, the gateway's AbortHandle), with the deadline header (`pool-header`; `pool-header-short`:
 * an 11-character name instead), with both (`pool-both`): the part of the gateway's cost that any client with per-try timeouts and deadline
 * propagation pays. `dump: false` when the pool is stubbed (its body is already closed).
 */
export function rawPoolModes(pool, { dump = true } = {}) {
  const rawOnce = (signal, header) => async () => {
    const res = await pool.request({ path: "/", method: "GET", headers: header ? [header, "10000"] : undefined, signal: signal ? new AbortHandle() : undefined });
    if (dump) await res.body.dump();
  };
  return {
    pool: rawOnce(false, undefined),
    "pool-signal": rawOnce(true, undefined),
    "pool-header": rawOnce(false, DEADLINE_HEADER),
    // What renaming the header to 11 characters would save (a protocol change, not made): undici
    // checks a name of 12+ characters with a regular expression, a shorter one with a loop.
    "pool-header-short": rawOnce(false, "x-roster-dl"),
    "pool-both": rawOnce(true, DEADLINE_HEADER),
  };
}
