import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ConcurrencyLimiter } from "../../src/core/concurrency.js";

describe("concurrency limiter", () => {
  test("concurrency - admits up to the cap, queues FIFO, hands slots over in order", async () => {
    const l = new ConcurrencyLimiter({ maxConcurrent: 2, maxQueue: 2 });
    const a = l.tryAcquire()!;
    const b = await l.acquire();
    assert.ok(b.ok);
    assert.equal(l.tryAcquire(), undefined);
    const order: string[] = [];
    const c = l.acquire().then((r) => (order.push("c"), r));
    const d = l.acquire().then((r) => (order.push("d"), r));
    assert.equal(l.queued, 2);
    const e = await l.acquire();
    assert.deepEqual(e, { ok: false, reason: "queue-full" });
    assert.equal(l.rejected, 1);
    a.release();
    a.release(); // idempotent: frees one slot only
    const rc = await c;
    assert.ok(rc.ok);
    assert.equal(l.inFlight, 2);
    assert.equal(l.queued, 1);
    if (b.ok) b.permit.release();
    const rd = await d;
    assert.ok(rd.ok);
    assert.deepEqual(order, ["c", "d"]);
    if (rc.ok) rc.permit.release();
    if (rd.ok) rd.permit.release();
    assert.equal(l.inFlight, 0);
  });

  test("concurrency - an aborted waiter leaves the queue and does not get a slot", async () => {
    const l = new ConcurrencyLimiter({ maxConcurrent: 1, maxQueue: 5 });
    const first = l.tryAcquire()!;
    const ac = new AbortController();
    const waiting = l.acquire(ac.signal);
    const next = l.acquire();
    ac.abort();
    assert.deepEqual(await waiting, { ok: false, reason: "aborted" });
    assert.equal(l.queued, 1);
    first.release();
    const r = await next;
    assert.ok(r.ok);
    assert.equal(l.inFlight, 1);
    const pre = new AbortController();
    pre.abort();
    assert.deepEqual(await l.acquire(pre.signal), { ok: false, reason: "aborted" });
  });

  test("concurrency - a newcomer does not overtake queued requests", async () => {
    const l = new ConcurrencyLimiter({ maxConcurrent: 1, maxQueue: 1 });
    const p = l.tryAcquire()!;
    const queued = l.acquire();
    p.release(); // slot goes to the queued waiter
    assert.equal(l.tryAcquire(), undefined);
    const r = await queued;
    assert.ok(r.ok);
  });

  test("concurrency - never more than the cap in flight under churn", async () => {
    const l = new ConcurrencyLimiter({ maxConcurrent: 3, maxQueue: 1000 });
    let peak = 0;
    const tasks = Array.from({ length: 200 }, async (_, i) => {
      const r = await l.acquire();
      assert.ok(r.ok);
      peak = Math.max(peak, l.inFlight);
      for (let k = 0; k < i % 3; k++) await Promise.resolve();
      r.permit.release();
    });
    await Promise.all(tasks);
    assert.ok(peak <= 3);
    assert.equal(l.inFlight, 0);
    assert.equal(l.queued, 0);
  });

  test("concurrency - bad options are a RangeError", () => {
    assert.throws(() => new ConcurrencyLimiter({ maxConcurrent: 0, maxQueue: 1 }), RangeError);
  });
});
