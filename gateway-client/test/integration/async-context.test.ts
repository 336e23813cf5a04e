// Every try, retry, hedge and handler callback runs in the async context of the request it
// belongs to. Eight concurrent requests, each inside its own AsyncLocalStorage.run(), against
// a hung instance, a refusing one and healthy ones, with hedging on; through gw.request(),
// undici.request/fetch with the dispatcher, and a raw dispatch handler. The tries are
// observed where they leave the gateway: undici's Pool.prototype.request / dispatch (what
// both front-ends call), so the check does not depend on the engine's own bookkeeping.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { AsyncLocalStorage } from "node:async_hooks";
import { Pool, request as undiciRequest, fetch as undiciFetch, type Dispatcher } from "undici";
import { waitFor } from "roster-testkit";
import { createGateway, type Gateway } from "../../src/index.js";
import { Upstream, fakeRegistryFixture, makeInstance, silent } from "./helpers.js";

const als = new AsyncLocalStorage<string>();

/** [request id from the x-req header, the ALS store when the try was sent]. */
let sent: Array<[string | undefined, string | undefined]> = [];

function headerOf(headers: unknown, name: string): string | undefined {
  if (headers == null) return undefined;
  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) {
      for (const [k, v] of headers as Array<[string, string]>) if (k.toLowerCase() === name) return v;
      return undefined;
    }
    for (let i = 0; i + 1 < headers.length; i += 2) if (String(headers[i]).toLowerCase() === name) return String(headers[i + 1]);
    return undefined;
  }
  for (const [k, v] of Object.entries(headers as Record<string, unknown>)) if (k.toLowerCase() === name) return String(v);
  return undefined;
}

describe("async context", () => {
  const fx = fakeRegistryFixture();
  const origRequest = Pool.prototype.request;
  const origDispatch = Pool.prototype.dispatch;
  before(() => {
    // Record the context of every try where it leaves for undici.
    Pool.prototype.request = function (this: Pool, opts: Dispatcher.RequestOptions, cb?: unknown) {
      sent.push([headerOf(opts.headers, "x-req"), als.getStore()]);
      return (origRequest as (...a: unknown[]) => unknown).call(this, opts, cb);
    } as typeof Pool.prototype.request;
    Pool.prototype.dispatch = function (this: Pool, opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler) {
      sent.push([headerOf(opts.headers, "x-req"), als.getStore()]);
      return origDispatch.call(this, opts, handler);
    };
  });
  after(() => {
    Pool.prototype.request = origRequest;
    Pool.prototype.dispatch = origDispatch;
  });

  let n = 0;
  async function setup(hedge: boolean): Promise<{ service: string; gw: Gateway }> {
    const service = `ctx${++n}`;
    const ups = await Promise.all(["hang", "refused", "ok", "ok"].map((_, i) => Upstream.start(`${service}-u${i}`)));
    ups[0]!.fault = "hang";
    ups[2]!.fault = "slow";
    ups[2]!.slowMs = 30;
    fx.cleanups.push(async () => {
      await Promise.all(ups.map((u) => u.close()));
    });
    for (const u of ups) fx.reg.put(makeInstance(service, u.name, u.port));
    await ups[1]!.kill(); // refuses from now on
    const gw = await createGateway({
      nats: fx.nats.url,
      services: [service],
      logger: silent,
      balancer: "round-robin",
      tryTimeout: 150,
      maxRetries: 3,
      retryBudget: { ratio: 10, minPerSecond: 1000 },
      hedge: { enabled: hedge, minSamples: 3, maxExtraLoad: 1, quantile: 0.5 },
      balancerOptions: { outlier: { consecutiveFailures: 0, maxEjectedShare: 0 }, breaker: { failureThreshold: 0 } },
    });
    fx.cleanups.push(() => gw.close());
    await waitFor(() => gw.instances(service).length === 4, { timeoutMs: 5000, what: "instances" });
    // Latency samples for the hedge delay (outside any context).
    for (let i = 0; i < 8; i++) await (await gw.request(service)).body.dump();
    return { service, gw };
  }

  /** Eight requests at once, each in its own context; every try must have been sent in it. */
  async function eight(call: (id: string) => Promise<void>): Promise<void> {
    sent = [];
    // A request may fail on a loaded machine (every try timed out): its context is checked all the same.
    const lost: string[] = [];
    await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        als.run(`r${i}`, () =>
          call(`r${i}`).catch((err: unknown) => {
            if (als.getStore() !== `r${i}`) lost.push(`r${i} rejected in ${als.getStore()}`);
            void err;
          }),
        ),
      ),
    );
    assert.deepEqual(lost, []);
    const mine = sent.filter(([id]) => id !== undefined);
    assert.ok(mine.length >= 8, `tries seen: ${mine.length}`);
    assert.ok(mine.length > 8, "some requests were retried or hedged");
    const wrong = mine.filter(([id, store]) => id !== store);
    assert.deepEqual(wrong, [], `${wrong.length} of ${mine.length} tries ran in another request's context`);
  }

  test("async context - gw.request(): tries, retries and hedges (fast and slow path) run in the caller's context", async () => {
    for (const hedge of [false, true]) {
      const { service, gw } = await setup(hedge);
      await eight(async (id) => {
        const res = await gw.request(service, { headers: { "x-req": id } });
        assert.equal(als.getStore(), id);
        await res.body.dump();
      });
    }
  });

  test("async context - undici.request with the dispatcher", async () => {
    for (const hedge of [false, true]) {
      const { service, gw } = await setup(hedge);
      await eight(async (id) => {
        const res = await undiciRequest(`http://${service}/`, { dispatcher: gw.dispatcher, headers: { "x-req": id } });
        assert.equal(als.getStore(), id);
        await res.body.dump();
      });
    }
  });

  test("async context - fetch with the dispatcher", async () => {
    for (const hedge of [false, true]) {
      const { service, gw } = await setup(hedge);
      await eight(async (id) => {
        const res = await undiciFetch(`http://${service}/`, { dispatcher: gw.dispatcher, headers: { "x-req": id } });
        assert.equal(als.getStore(), id);
        await res.arrayBuffer();
      });
    }
  });

  test("async context - a dispatch handler's callbacks run in the dispatching context", async () => {
    for (const hedge of [false, true]) {
      const { service, gw } = await setup(hedge);
      const wrongCallbacks: string[] = [];
      await eight(
        (id) =>
          new Promise<void>((resolve, reject) => {
            const check = (what: string): void => {
              if (als.getStore() !== id) wrongCallbacks.push(`${id} ${what} in ${als.getStore()}`);
            };
            gw.dispatcher.dispatch(
              { origin: `http://${service}`, path: "/", method: "GET", headers: { "x-req": id } },
              {
                onConnect: () => check("onConnect"),
                onHeaders: () => (check("onHeaders"), true),
                onData: () => (check("onData"), true),
                onComplete: () => (check("onComplete"), resolve()),
                onError: (err) => (check("onError"), reject(err)),
              },
            );
          }),
      );
      assert.deepEqual(wrongCallbacks, []);
    }
  });
});
