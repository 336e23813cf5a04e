// The request path's fast path (first try without async layers, shared timeout queue,
// EventEmitter-like abort handles): timeouts of different lengths, caller aborts before
// and after the headers, close() with an open body, and the concurrency slot given back
// on every way a request can end.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { IncomingMessage, ServerResponse } from "node:http";
import { waitFor } from "roster-testkit";
import { Pool } from "undici";
import { createGateway, GatewayClosedError, RequestAbortedError, TryTimeoutError, type Gateway, type GatewayOptions } from "../../src/index.js";
import { Upstream, fakeRegistryFixture, makeInstance, silent } from "./helpers.js";

describe("gateway fast path", () => {
  const fx = fakeRegistryFixture();
  let n = 0;

  /** One upstream answering by path: /hang never answers, /open sends headers and part of a body, /503, else 200. */
  async function setup(opts: Partial<GatewayOptions> = {}) {
    const service = `fast${++n}`;
    const up = await Upstream.start(`${service}-u0`, (req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      if (req.url === "/hang") return;
      if (req.url === "/open") {
        res.writeHead(200, { "content-type": "text/plain" });
        res.write("partial");
        return;
      }
      if (req.url === "/503") {
        res.statusCode = 503;
        res.end("busy");
        return;
      }
      res.end("ok");
    });
    fx.cleanups.push(() => up.close());
    fx.reg.put(makeInstance(service, up.name, up.port));
    const gw = await createGateway({ nats: fx.nats.url, services: [service], logger: silent, ...opts });
    fx.cleanups.push(() => gw.close());
    await waitFor(() => gw.instances(service).length === 1, { timeoutMs: 5000, what: "the instance" });
    return { service, up, gw };
  }

  const settle = <T>(p: Promise<T>): Promise<T | unknown> => p.then((v) => v, (err: unknown) => err);

  test("gateway - per-try timeouts of different lengths, in flight together, each fire on time", async () => {
    const { service, gw } = await setup({ maxRetries: 0 });
    const t0 = Date.now();
    const ends: Record<string, number> = {};
    const run = (name: string, timeout: number) =>
      settle(gw.request(service, { path: "/hang", timeout })).then((r) => {
        ends[name] = Date.now() - t0;
        return r;
      });
    const results = await Promise.all([run("a", 300), run("b", 100), run("c", 100), run("d", 200)]);
    for (const r of results) assert.ok(r instanceof TryTimeoutError, String(r));
    assert.ok(ends.b! >= 95 && ends.c! >= 95 && ends.b! < 250 + 1000, JSON.stringify(ends));
    assert.ok(ends.d! >= 195, JSON.stringify(ends));
    assert.ok(ends.a! >= 295 && ends.a! < 300 + 1500, JSON.stringify(ends));
    assert.ok(ends.b! < ends.a! && ends.d! < ends.a!, JSON.stringify(ends));
    assert.equal(gw.stats(service)!.inFlight, 0);
  });

  test("gateway - a signal already aborted rejects with ROSTER_ABORTED and sends nothing", async () => {
    const { service, up, gw } = await setup();
    const ac = new AbortController();
    ac.abort(new Error("no longer needed"));
    await assert.rejects(gw.request(service, { signal: ac.signal }), (err: unknown) => err instanceof RequestAbortedError);
    assert.equal(up.hits, 0);
    assert.equal(gw.stats(service)!.inFlight, 0);
  });

  test("gateway - the caller's signal after the headers destroys the open body and frees the slot", async () => {
    const { service, gw } = await setup();
    const ac = new AbortController();
    const res = await gw.request(service, { path: "/open", signal: ac.signal });
    assert.equal(res.statusCode, 200);
    assert.equal(gw.stats(service)!.inFlight, 1, "the slot is held while the body is open");
    res.body.on("error", () => {});
    const closed = new Promise<void>((r) => res.body.once("close", () => r()));
    ac.abort();
    await closed;
    assert.ok(res.body.destroyed);
    assert.equal(gw.stats(service)!.inFlight, 0);
  });

  // A Pool of the gateway's undici gets each try through undici's own request() with the try as
  // its dispatch handler (no abort signal); any other pool gets the try as an abort signal. Both
  // must end tries and bodies the same way.
  class OwnRequestPool extends Pool {
    override request(...args: Parameters<Pool["request"]>): ReturnType<Pool["request"]> {
      return (super.request as (...a: unknown[]) => ReturnType<Pool["request"]>)(...args);
    }
  }
  for (const [path, poolFactory] of [
    ["dispatch handler", undefined],
    ["abort signal", (origin: string, options: Pool.Options) => new OwnRequestPool(origin, options)],
  ] as const) {
    test(`gateway (${path}) - undici's ResponseData, try timeout, the caller's abort before and after the headers`, async () => {
      const { service, up, gw } = await setup({ maxRetries: 0, ...(poolFactory ? { poolFactory } : {}) });
      const ok = await gw.request(service, { path: "/" });
      assert.deepEqual(Object.keys(ok).sort(), ["body", "context", "headers", "opaque", "statusCode", "statusText", "trailers"]);
      assert.equal(ok.opaque, null);
      assert.equal(await ok.body.text(), "ok");
      // Another pool: the request ends when the body closes (the engine's 'close' listener, and undici's
      // for the signal). The handler path adds none: the try sees the response end, so a complete
      // response frees its slot before its body is read, as undici frees the connection.
      const open = await gw.request(service, { path: "/open" });
      assert.equal(open.body.listenerCount("close"), poolFactory ? 2 : 0);
      assert.equal(gw.stats(service)!.inFlight, 1, "a response still arriving holds its slot");
      open.body.destroy();
      await waitFor(() => gw.stats(service)!.inFlight === 0, { timeoutMs: 2000, what: "the slot back once the body is destroyed" });
      const unread = await gw.request(service, { path: "/" });
      if (poolFactory) assert.equal(gw.stats(service)!.inFlight, 1, "held until its body closes");
      else await waitFor(() => gw.stats(service)!.inFlight === 0, { timeoutMs: 2000, what: "a complete response's slot back, body unread" });
      assert.equal(await unread.body.text(), "ok");
      await waitFor(() => gw.stats(service)!.inFlight === 0, { timeoutMs: 2000, what: "the slot back once the body is read" });

      assert.ok((await settle(gw.request(service, { path: "/hang", timeout: 100 }))) instanceof TryTimeoutError);
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 30);
      assert.ok((await settle(gw.request(service, { path: "/hang", timeout: 5000, signal: ac.signal }))) instanceof RequestAbortedError);

      const ac2 = new AbortController();
      const res = await gw.request(service, { path: "/open", signal: ac2.signal });
      res.body.on("error", () => {});
      const closed = new Promise<void>((r) => res.body.once("close", () => r()));
      ac2.abort();
      await closed;
      assert.ok(res.body.destroyed);
      await waitFor(() => gw.stats(service)!.inFlight === 0, { timeoutMs: 2000, what: "every slot back" });
      // The hung requests' connections were destroyed by the aborts: the pool still answers.
      assert.equal((await gw.request(service, { path: "/" })).statusCode, 200);
      assert.ok(up.hits >= 5);
    });
  }

  test("gateway - close() destroys a body still open", async () => {
    const { service, gw } = await setup();
    const res = await gw.request(service, { path: "/open" });
    res.body.on("error", () => {});
    const closed = new Promise<void>((r) => res.body.once("close", () => r()));
    await gw.close();
    await closed;
    assert.ok(res.body.destroyed);
    await assert.rejects(gw.request(service), (err: unknown) => err instanceof GatewayClosedError);
  });

  test("gateway - bad options from an untyped caller reject (never throw) and hold no slot", async () => {
    const { service, gw } = await setup();
    const bad = { method: 42 } as unknown as Parameters<Gateway["request"]>[1];
    let p: Promise<unknown> | undefined;
    assert.doesNotThrow(() => (p = gw.request(service, bad)));
    await assert.rejects(p!);
    assert.equal(gw.stats(service)!.inFlight, 0);
    // A NaN deadline behaves as setTimeout(NaN) did: the try times out at once, no busy timer.
    const r = await settle(gw.request(service, { path: "/hang", deadline: Number.NaN, maxRetries: 0 }));
    assert.ok(r instanceof Error, String(r));
    assert.equal(gw.stats(service)!.inFlight, 0);
  });

  test("gateway - the concurrency slot comes back after success, 503, timeout, abort and a consumed body; concurrent requests share the cap", async () => {
    const { service, gw } = await setup({ concurrency: { limit: 2, queue: 100 }, tryTimeout: 100, maxRetries: 1 });
    const body = async (g: Gateway, path: string): Promise<number> => {
      const res = await g.request(service, { path });
      await res.body.text();
      return res.statusCode;
    };
    assert.equal(await body(gw, "/"), 200);
    assert.equal(await body(gw, "/503"), 503);
    assert.ok((await settle(gw.request(service, { path: "/hang" }))) instanceof TryTimeoutError);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 20);
    assert.ok((await settle(gw.request(service, { path: "/hang", signal: ac.signal, timeout: 5000 }))) instanceof RequestAbortedError);
    assert.equal(gw.stats(service)!.inFlight, 0);
    const codes = await Promise.all(Array.from({ length: 20 }, () => body(gw, "/")));
    assert.deepEqual(new Set(codes), new Set([200]));
    // A slot is given back on the body's 'close', which follows the end of the read by a tick.
    await waitFor(() => gw.stats(service)!.inFlight === 0, { timeoutMs: 2000, what: "every slot back" });
    assert.equal(gw.stats(service)!.queued, 0);
  });
});
