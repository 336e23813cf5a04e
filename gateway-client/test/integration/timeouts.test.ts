// The request path's abort handle and shared timeout queue, with real timers and a real
// undici Pool against a real node:http server.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { EventEmitter } from "node:events";
import { Pool } from "undici";
import { AbortHandle, TimedEntry, TimeoutQueue } from "../../src/adapters/timeouts.js";
import { nowMs } from "../../src/adapters/clock.js";

class Entry extends TimedEntry {
  firedAt: number | undefined;
  constructor(
    readonly name: string,
    readonly log: string[],
    readonly then?: () => void,
  ) {
    super();
  }
  late: number[] = [];
  onTimeout(lateMs: number): void {
    this.late.push(lateMs);
    this.firedAt = nowMs();
    this.log.push(this.name);
    this.then?.();
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("timeouts", () => {
  test("abort handle - listeners run once with the reason set; removed ones never run", () => {
    const h = new AbortHandle();
    const calls: string[] = [];
    const a = (): void => void calls.push(`a:${String(h.reason)}`);
    const b = (): void => void calls.push("b");
    const c = (): void => void calls.push("c");
    h.once("abort", a).on("abort", b).addListener("abort", c);
    h.removeListener("abort", b);
    assert.equal(h.aborted, false);
    h.abort("why");
    h.abort("again");
    assert.equal(h.aborted, true);
    assert.equal(h.reason, "why");
    assert.deepEqual(calls, ["a:why", "c"]);
  });

  test("timeout queue - entries of one duration fire in order, not before their time; removed ones never fire", async () => {
    const q = new TimeoutQueue();
    const log: string[] = [];
    const t0 = nowMs();
    const e1 = new Entry("e1", log);
    const e2 = new Entry("e2", log);
    const e3 = new Entry("e3", log);
    q.add(e1, 40, nowMs());
    await sleep(15);
    q.add(e2, 40, nowMs());
    q.add(e3, 40, nowMs());
    q.remove(e2);
    q.remove(e2); // idempotent
    assert.equal(q.size, 2);
    await sleep(200);
    assert.deepEqual(log, ["e1", "e3"]);
    assert.ok(e1.firedAt! - t0 >= 39, `e1 after ${e1.firedAt! - t0} ms`);
    assert.ok(e3.firedAt! - t0 >= 54, `e3 after ${e3.firedAt! - t0} ms`);
    assert.equal(q.size, 0);
    q.clear();
  });

  test("timeout queue - different durations fire independently; an entry re-added from a callback fires again", async () => {
    const q = new TimeoutQueue();
    const log: string[] = [];
    const t0 = nowMs();
    const again = new Entry("again", log);
    const long = new Entry("long", log);
    const short = new Entry("short", log, () => q.add(again, 30, nowMs()));
    q.add(long, 120, t0);
    q.add(short, 20, t0);
    await sleep(300);
    assert.deepEqual(log, ["short", "again", "long"]);
    assert.ok(again.firedAt! - t0 >= 49, `again after ${again.firedAt! - t0} ms`);
    assert.ok(long.firedAt! - t0 >= 119, `long after ${long.firedAt! - t0} ms`);
    q.clear();
  });

  test("timeout queue - the head removed early: the timer fires, finds nothing due and re-arms for the next", async () => {
    const q = new TimeoutQueue();
    const log: string[] = [];
    const a = new Entry("a", log);
    const b = new Entry("b", log);
    q.add(a, 30, nowMs());
    await sleep(20);
    const tb = nowMs();
    q.add(b, 30, tb);
    q.remove(a);
    await sleep(120);
    assert.deepEqual(log, ["b"]);
    assert.ok(b.firedAt! - tb >= 29);
    q.clear();
  });

  test("timeout queue - a timer that fired late: removal in the same turn wins, and a late entry gets the stolen time once", async () => {
    const q = new TimeoutQueue();
    const log: string[] = [];
    const t0 = nowMs();
    const answered = new Entry("answered", log);
    const late = new Entry("late", log);
    const onTime = new Entry("on-time", log);
    q.add(answered, 50, t0);
    q.add(late, 50, t0);
    // The loop is blocked past both due times; what I/O would do before the check phase is
    // simulated by a poll-phase-ish callback (setImmediate queued before the block runs after the timers).
    setImmediate(() => {
      const end = nowMs() + 150;
      while (nowMs() < end) {
        // blocked
      }
      setImmediate(() => q.remove(answered)); // queued before the timers fire: runs in the same check phase, first
    });
    await sleep(120); // resolves in the timers phase of the late firing
    assert.equal(q.size, 2, "expired entries wait for the check phase");
    await new Promise((r) => setImmediate(r)); // after the removal and the grace turn
    assert.deepEqual(log, [], "nothing expires in the turn its late timer fired");
    assert.equal(q.answeredInGrace, 1);
    assert.equal(q.lagExtended, 1);
    await sleep(200);
    assert.deepEqual(log, ["late"]);
    assert.ok(late.firedAt! - t0 >= 150 + 50, `late fired after ${(late.firedAt! - t0).toFixed(0)} ms: not extended`);
    assert.ok(late.late[0]! < 50, `extension fired ${late.late[0]} ms late`);
    // An on-time timer expires one turn after it fires, not extended.
    const t1 = nowMs();
    q.add(onTime, 20, t1);
    await sleep(80);
    assert.deepEqual(log, ["late", "on-time"]);
    assert.equal(q.lagExtended, 1);
    assert.ok(onTime.firedAt! - t1 < 70);
    q.clear();
  });

  test("timeout queue - clear() stops every timer", async () => {
    const q = new TimeoutQueue();
    const log: string[] = [];
    q.add(new Entry("x", log), 20, nowMs());
    q.add(new Entry("y", log), 25, nowMs());
    q.clear();
    await sleep(80);
    assert.deepEqual(log, []);
    assert.equal(q.size, 0);
  });

  test("abort handle - undici accepts it as a request signal: abort before and after the headers", async () => {
    let server: Server | undefined;
    let pool: Pool | undefined;
    try {
      server = createServer((req, res) => {
        if (req.url === "/hang") return; // never answers
        res.writeHead(200, { "content-type": "text/plain" });
        res.write("partial"); // headers sent, body never ends
      });
      await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
      pool = new Pool(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
      const before = new AbortHandle();
      const p = pool.request({ path: "/hang", method: "GET", signal: before as unknown as EventEmitter });
      setTimeout(() => before.abort(new Error("stop before headers")), 30);
      await assert.rejects(p, /stop before headers/);

      const after = new AbortHandle();
      const res = await pool.request({ path: "/body", method: "GET", signal: after as unknown as EventEmitter });
      assert.equal(res.statusCode, 200);
      const closed = new Promise<void>((r) => res.body.once("close", () => r()));
      res.body.on("error", () => {});
      after.abort(new Error("stop the body"));
      await closed;
      assert.ok(res.body.destroyed);

      const already = new AbortHandle();
      already.abort(new Error("already"));
      await assert.rejects(pool.request({ path: "/hang", method: "GET", signal: already as unknown as EventEmitter }), /already/);
    } finally {
      await pool?.destroy();
      server?.closeAllConnections();
      await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    }
  });
});
