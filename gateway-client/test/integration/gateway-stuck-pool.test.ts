// A try that waits inside the undici Pool for a connection (never dispatched) must still end
// on time: undici 7 only records the abort of an undispatched request, so the gateway settles
// the try itself on its timeout, the deadline and the caller's abort. Reproduced without
// SIGSTOP: `pool.connections: 1` and an upstream whose first request hangs, so the next
// request to that instance queues in the Pool behind it. Real node:http, real undici.
import { after, afterEach, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { IncomingMessage, ServerResponse } from "node:http";
import { request as undiciRequest, type Dispatcher } from "undici";
import { NatsServer, waitFor } from "roster-testkit";
import {
  createGateway,
  DeadlineExceededError,
  RequestAbortedError,
  TryTimeoutError,
  type Gateway,
  type GatewayOptions,
} from "../../src/index.js";
import { FakeRegistry, Upstream, makeInstance, silent } from "./helpers.js";

/** Slack over a timeout for a loaded 2-core machine; without the fix these waits last as long as the hung request (10 s). */
const SLACK_MS = 300;
const HUNG_MS = 10_000;

describe("gateway stuck pool", () => {
  let nats: NatsServer;
  let reg: FakeRegistry;
  const cleanups: Array<() => Promise<void>> = [];
  let n = 0;
  const unhandled: unknown[] = [];
  const onUnhandled = (err: unknown): void => void unhandled.push(err);

  before(async () => {
    nats = await NatsServer.start({ jetstream: false });
    reg = await FakeRegistry.start(nats.url);
    process.on("unhandledRejection", onUnhandled);
  });
  after(async () => {
    process.off("unhandledRejection", onUnhandled);
    await reg.close();
    await nats.close();
  });
  beforeEach(() => {
    unhandled.length = 0;
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
  });

  interface Held {
    up: Upstream;
    /** Responses of /hang requests, held open until released. */
    held: ServerResponse[];
    release(): void;
  }

  /** Upstreams answering "/hang" only when released, anything else at once; a gateway with one connection per instance. */
  async function setup(count: number, opts: Partial<GatewayOptions> = {}): Promise<{ service: string; ups: Held[]; gw: Gateway }> {
    const service = `stuck${++n}`;
    const ups: Held[] = [];
    for (let i = 0; i < count; i++) {
      const held: ServerResponse[] = [];
      const name = `${service}-u${i}`;
      const up = await Upstream.start(name, (req: IncomingMessage, res: ServerResponse) => {
        req.resume();
        res.setHeader("x-upstream", name);
        if (req.url === "/hang") return void held.push(res);
        res.end(`ok from ${name}`);
      });
      ups.push({ up, held, release: () => held.splice(0).forEach((r) => r.end("late")) });
      cleanups.push(() => up.close());
      reg.put(makeInstance(service, name, up.port));
    }
    const gw = await createGateway({ nats: nats.url, services: [service], logger: silent, pool: { connections: 1 }, ...opts });
    cleanups.push(() => gw.close());
    await waitFor(() => gw.instances(service).length === count, { timeoutMs: 5000, what: "the instances" });
    return { service, ups, gw };
  }

  const settle = <T>(p: Promise<T>): Promise<T | unknown> => p.then((v) => v, (err: unknown) => err);

  /** Occupies the only connection to the instance `hashKey` maps to (ring-hash) or to the only instance. */
  async function occupy(gw: Gateway, service: string, up: Held, hashKey?: string): Promise<{ res: Promise<Dispatcher.ResponseData | unknown> }> {
    const before = up.held.length;
    const res = settle(gw.request(service, { path: "/hang", timeout: HUNG_MS, maxRetries: 0, hashKey }));
    await waitFor(() => up.held.length === before + 1, { timeoutMs: 2000, what: "the hung request at the upstream" });
    return { res };
  }

  /** After the hung request is released, the only connection serves again: nothing was leaked to the abandoned try. */
  async function releaseAndCheck(gw: Gateway, service: string, up: Held, hung: Promise<unknown>, hashKey?: string): Promise<void> {
    up.release();
    const first = (await hung) as Dispatcher.ResponseData;
    assert.equal(first.statusCode, 200);
    assert.equal(await first.body.text(), "late");
    const res = await gw.request(service, { path: "/", timeout: 2000, hashKey });
    assert.equal(res.statusCode, 200);
    await res.body.text();
    await waitFor(() => gw.stats(service)!.inFlight === 0, { timeoutMs: 2000, what: "every slot back" });
    // Give undici time to dispatch (and drop) the abandoned request: it never reaches the upstream.
    await new Promise((r) => setTimeout(r, 50));
    const stats = gw.stats(service)!;
    assert.equal(stats.inFlight, 0);
    for (const e of stats.endpoints) assert.equal(e.inFlight, 0, `endpoint ${e.id} in flight`);
    assert.deepEqual(unhandled, []);
  }

  /** Two ring-hash keys that map to different instances, and the instance of each. */
  async function keysApart(gw: Gateway, service: string): Promise<Map<string, string>> {
    const byEndpoint = new Map<string, string>();
    for (let i = 0; i < 200 && byEndpoint.size < 2; i++) {
      const p = await gw.pick(service, { hashKey: `k${i}` });
      p.done("cancelled");
      if (!byEndpoint.has(p.endpoint.id)) byEndpoint.set(p.endpoint.id, `k${i}`);
    }
    assert.equal(byEndpoint.size, 2);
    return byEndpoint;
  }

  test("gateway - a try queued in the Pool behind a hung request ends at its timeout (one instance: ROSTER_TRY_TIMEOUT), and its late drop is ignored", async () => {
    const { service, ups, gw } = await setup(1);
    const u0 = ups[0]!;
    const { res: hung } = await occupy(gw, service, u0);
    const t0 = performance.now();
    const r = await settle(gw.request(service, { path: "/", timeout: 100, maxRetries: 0 }));
    const took = performance.now() - t0;
    assert.ok(r instanceof TryTimeoutError, String(r));
    assert.ok(took >= 95 && took < 100 + SLACK_MS, `settled after ${took} ms`);
    assert.equal(gw.stats(service)!.inFlight, 1, "only the hung request holds a slot");
    const ep = gw.stats(service)!.endpoints[0]!;
    assert.equal(ep.inFlight, 1, "the timed-out try was reported to the balancer");
    assert.equal(u0.up.hits, 1, "the queued try was never sent");
    await releaseAndCheck(gw, service, u0, hung);
    assert.equal(u0.up.hits, 2, "the abandoned try was dropped by undici, not sent after the release");
  });

  test("gateway - a try queued in the Pool is retried on another instance at once", async () => {
    const { service, ups, gw } = await setup(2, { balancer: "ring-hash" });
    const keys = await keysApart(gw, service);
    const [stuckId, key] = [...keys][0]!;
    const stuck = ups.find((u) => u.up.name === stuckId)!;
    const other = ups.find((u) => u.up.name !== stuckId)!;
    const { res: hung } = await occupy(gw, service, stuck, key);
    const t0 = performance.now();
    const res = await gw.request(service, { path: "/", timeout: 100, hashKey: key });
    const took = performance.now() - t0;
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers["x-upstream"], other.up.name);
    await res.body.text();
    // The retry's backoff is at most 25 ms (first retry, default base).
    assert.ok(took >= 95 && took < 125 + SLACK_MS, `answered after ${took} ms`);
    assert.equal(gw.stats(service)!.retries, 1);
    await releaseAndCheck(gw, service, stuck, hung, key);
  });

  test("gateway - retries queued in two Pools each end at their timeout (the async path)", async () => {
    const { service, ups, gw } = await setup(2, { balancer: "ring-hash" });
    const keys = await keysApart(gw, service);
    const [[idA, keyA], [idB, keyB]] = [...keys] as [[string, string], [string, string]];
    const upA = ups.find((u) => u.up.name === idA)!;
    const upB = ups.find((u) => u.up.name === idB)!;
    const { res: hungA } = await occupy(gw, service, upA, keyA);
    const { res: hungB } = await occupy(gw, service, upB, keyB);
    const t0 = performance.now();
    const r = await settle(gw.request(service, { path: "/", timeout: 100, maxRetries: 1, hashKey: keyA }));
    const took = performance.now() - t0;
    assert.ok(r instanceof TryTimeoutError, String(r));
    assert.ok(took >= 190 && took < 225 + SLACK_MS, `settled after ${took} ms`);
    assert.equal(gw.stats(service)!.tries, 4, "two hung requests, then two tries");
    upB.release();
    await ((await hungB) as Dispatcher.ResponseData).body.text();
    const res = await gw.request(service, { path: "/", timeout: 2000, hashKey: keyB });
    assert.equal(res.headers["x-upstream"], upB.up.name);
    await res.body.text();
    await releaseAndCheck(gw, service, upA, hungA, keyA);
    assert.equal(upA.up.hits + upB.up.hits, 4, "neither queued try was sent (2 hung + 2 after the release)");
  });

  test("gateway - the deadline and the caller's abort end a try queued in the Pool at once", async () => {
    const { service, ups, gw } = await setup(1);
    const u0 = ups[0]!;
    const { res: hung } = await occupy(gw, service, u0);

    let t0 = performance.now();
    const byDeadline = await settle(gw.request(service, { path: "/", timeout: 5000, deadline: 100 }));
    let took = performance.now() - t0;
    assert.ok(byDeadline instanceof DeadlineExceededError, String(byDeadline));
    assert.ok(took >= 95 && took < 100 + SLACK_MS, `deadline after ${took} ms`);

    const ac = new AbortController();
    t0 = performance.now();
    setTimeout(() => ac.abort(new Error("caller gave up")), 50);
    const byCaller = await settle(gw.request(service, { path: "/", timeout: 5000, signal: ac.signal }));
    took = performance.now() - t0;
    assert.ok(byCaller instanceof RequestAbortedError, String(byCaller));
    assert.ok(took >= 45 && took < 50 + SLACK_MS, `abort after ${took} ms`);

    assert.equal(gw.stats(service)!.inFlight, 1, "only the hung request holds a slot");
    await releaseAndCheck(gw, service, u0, hung);
    assert.equal(u0.up.hits, 2, "neither queued try was sent");
  });

  test("dispatcher - a try queued in the Pool ends at its timeout with exactly one onError, and later callbacks are ignored", async () => {
    const { service, ups, gw } = await setup(1, { tryTimeout: 100, maxRetries: 0 });
    const u0 = ups[0]!;
    // The gateway's request() and its dispatcher share the instance's Pool (and its only connection).
    const { res: hung } = await occupy(gw, service, u0);
    const calls: string[] = [];
    let error: Error | undefined;
    const t0 = performance.now();
    const ended = new Promise<number>((resolve) => {
      gw.dispatcher.dispatch(
        { origin: `http://${service}`, path: "/", method: "GET" },
        {
          onConnect: () => void calls.push("connect"),
          onHeaders: () => {
            calls.push("headers");
            return true;
          },
          onData: () => {
            calls.push("data");
            return true;
          },
          onComplete: () => void calls.push("complete"),
          onError: (err) => {
            calls.push("error");
            error = err;
            resolve(performance.now() - t0);
          },
        },
      );
    });
    const took = await ended;
    assert.ok(error instanceof TryTimeoutError, String(error));
    assert.ok(took >= 95 && took < 100 + SLACK_MS, `onError after ${took} ms`);
    assert.equal(gw.stats(service)!.endpoints[0]!.inFlight, 1, "only the hung request is in flight");

    // Through undici.request as well: the promise rejects on time.
    const t1 = performance.now();
    const viaRequest = await settle(undiciRequest(`http://${service}/`, { dispatcher: gw.dispatcher }));
    const took2 = performance.now() - t1;
    assert.ok(viaRequest instanceof TryTimeoutError, String(viaRequest));
    assert.ok(took2 >= 95 && took2 < 100 + SLACK_MS, `request rejected after ${took2} ms`);

    // The caller's abort, before the try's timeout.
    const ac = new AbortController();
    const t2 = performance.now();
    setTimeout(() => ac.abort(new Error("caller gave up")), 30);
    const aborted = await settle(undiciRequest(`http://${service}/`, { dispatcher: gw.dispatcher, signal: ac.signal }));
    const took3 = performance.now() - t2;
    assert.ok(aborted instanceof Error, String(aborted));
    assert.ok(took3 >= 25 && took3 < 30 + SLACK_MS, `abort after ${took3} ms`);

    await releaseAndCheck(gw, service, u0, hung);
    assert.deepEqual(calls, ["connect", "error"], "one onError, nothing after it");
    assert.equal(u0.up.hits, 2, "no queued try was sent");
  });
});
