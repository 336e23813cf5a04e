import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BULK_LANE_DEFAULTS, BulkLane } from "../../src/core/bulk-lane.js";

const opts = { ...BULK_LANE_DEFAULTS, maxQueued: 4, maxWaitMs: 100, maxLagMs: 50, holdMs: 1000, minRetryAfterMs: 200, maxRetryAfterMs: 5000 };

describe("bulk lane", () => {
  it("bulk lane - serves oldest first; past maxQueued a request is refused at once and counted", () => {
    const lane = new BulkLane<number>(opts);
    for (let i = 0; i < 4; i++) assert.equal(lane.offer(i, 0), true);
    assert.equal(lane.offer(4, 0), false, "full");
    assert.equal(lane.counters.shed["queue-full"], 1);
    assert.deepEqual(lane.next(10), { item: 0, shed: false });
    assert.deepEqual(lane.next(10), { item: 1, shed: false });
    assert.equal(lane.queued, 2);
    assert.equal(lane.offer(5, 10), true, "room again");
  });

  it("bulk lane - a request that waited past maxWaitMs is shed (answered retry-later), the rest served", () => {
    const lane = new BulkLane<string>(opts);
    lane.offer("old", 0);
    lane.offer("new", 90);
    assert.deepEqual(lane.next(150), { item: "old", shed: true });
    assert.deepEqual(lane.next(150), { item: "new", shed: false });
    assert.equal(lane.next(150), undefined);
    assert.equal(lane.counters.shed.waited, 1);
  });

  it("bulk lane - sheds HTTP bodies while the event loop lags or after shedding, for holdMs; a refusal does not prolong it", () => {
    const lane = new BulkLane<string>(opts);
    assert.equal(lane.shedding(0), false);
    lane.noteLag(20, 0);
    assert.equal(lane.shedding(1), false, "lag under maxLagMs");
    lane.noteLag(80, 1000);
    assert.equal(lane.shedding(1000), true);
    lane.refuse();
    lane.refuse();
    assert.equal(lane.counters.shed.http, 2);
    assert.equal(lane.shedding(1999), true);
    assert.equal(lane.shedding(2000), false, "hold over: refusals meanwhile did not extend it");
    // A snapshot request shed because it waited also means overload.
    lane.offer("x", 3000);
    lane.next(3200);
    assert.equal(lane.shedding(3300), true);
    assert.equal(lane.shedding(4300), false);
    // Half full is overloaded too.
    lane.offer("a", 5000);
    assert.equal(lane.shedding(5000), false);
    lane.offer("b", 5000);
    assert.equal(lane.shedding(5000), true);
  });

  it("bulk lane - retry-after grows with the backlog and the measured cost, within bounds", () => {
    const lane = new BulkLane<number>({ ...opts, maxQueued: 100_000 });
    assert.equal(lane.retryAfterMs(), 200, "empty: the minimum");
    for (let i = 0; i < 20; i++) lane.served(10); // ~10 ms a request
    for (let i = 0; i < 50; i++) lane.offer(i, 0);
    const mid = lane.retryAfterMs();
    assert.ok(mid > 200 && mid < 5000, `50 queued at ~10 ms: ${mid}`);
    for (let i = 0; i < 5000; i++) lane.offer(i, 0);
    assert.equal(lane.retryAfterMs(), 5000, "capped");
  });

  it("bulk lane - a long run keeps memory bounded (the served head is dropped)", () => {
    const lane = new BulkLane<number>({ ...opts, maxQueued: 10 });
    for (let i = 0; i < 100_000; i++) {
      lane.offer(i, i);
      assert.equal(lane.next(i)?.item, i);
    }
    assert.equal(lane.queued, 0);
    assert.ok((lane as unknown as { queue: unknown[] }).queue.length <= 2048);
  });
});
