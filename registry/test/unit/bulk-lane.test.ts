import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BULK_LANE_DEFAULTS, BulkLane } from "../../src/core/bulk-lane.js";

const opts = { ...BULK_LANE_DEFAULTS, maxQueued: 4, maxLagMs: 50, holdMs: 1000, overloadedBodiesPerS: 10, minRetryAfterMs: 200, maxRetryAfterMs: 5000 };

describe("bulk lane", () => {
  it("bulk lane - serves oldest first; past maxQueued a request is refused at once and counted", () => {
    const lane = new BulkLane<number>(opts);
    for (let i = 0; i < 4; i++) assert.equal(lane.offer(i, 0), true);
    assert.equal(lane.offer(4, 0), false, "full");
    assert.equal(lane.counters.shed["queue-full"], 1);
    assert.equal(lane.next(), 0);
    assert.equal(lane.next(), 1);
    assert.equal(lane.queued, 2);
    assert.equal(lane.offer(5, 10), true, "room again");
    assert.deepEqual([lane.next(), lane.next(), lane.next(), lane.next()], [2, 3, 5, undefined]);
  });

  it("bulk lane - never sheds a queued request for its age alone (a slow machine must still make progress)", () => {
    const lane = new BulkLane<string>(opts);
    lane.offer("old", 0);
    assert.equal(lane.next(), "old");
  });

  it("bulk lane - overloaded while the event loop lags, after a refusal, or half full, for holdMs", () => {
    const lane = new BulkLane<string>(opts);
    assert.equal(lane.overloaded(0), false);
    lane.noteLag(20, 0);
    assert.equal(lane.overloaded(1), false, "lag under maxLagMs");
    lane.noteLag(80, 1000);
    assert.equal(lane.overloaded(1999), true);
    assert.equal(lane.overloaded(2000), false, "hold over");
    for (let i = 0; i < 4; i++) lane.offer(String(i), 3000);
    lane.offer("x", 3000); // refused: full
    for (let i = 0; i < 4; i++) lane.next();
    assert.equal(lane.overloaded(3999), true, "a refused request means overload");
    assert.equal(lane.overloaded(4000), false);
    lane.offer("a", 5000);
    assert.equal(lane.overloaded(5000), false);
    lane.offer("b", 5000);
    assert.equal(lane.overloaded(5000), true, "half full");
  });

  it("bulk lane - while overloaded, HTTP bodies are admitted at overloadedBodiesPerS, the rest refused and counted; refusals do not prolong it", () => {
    const lane = new BulkLane<string>(opts);
    for (let i = 0; i < 50; i++) assert.equal(lane.admitBody(i), true, "not overloaded: every body");
    lane.noteLag(500, 1000);
    let admitted = 0;
    // 100 bodies asked over one second of overload (every 10 ms): the bucket starts full (10) and refills 10/s.
    for (let t = 1000; t < 2000; t += 10) if (lane.admitBody(t)) admitted++;
    assert.ok(admitted >= 10 && admitted <= 21, `admitted ${admitted}`);
    assert.equal(lane.counters.shed.http, 100 - admitted);
    assert.equal(lane.admitBody(2000), true, "the hold ended: refusals did not extend it");
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
      assert.equal(lane.next(), i);
    }
    assert.equal(lane.queued, 0);
    assert.ok((lane as unknown as { queue: unknown[] }).queue.length <= 2048);
  });
});
