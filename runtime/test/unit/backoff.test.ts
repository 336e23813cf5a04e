import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { Backoff, replicaCandidates, retry } from "../../src/index.js";

const withInfo = (info: Partial<NonNullable<NatsConnection["info"]>> | undefined) => ({ info }) as unknown as NatsConnection;

describe("runtime helpers", () => {
  it("backoff - doubles up to the cap and starts over on reset", () => {
    const b = new Backoff(100, 500);
    assert.deepEqual([b.next(), b.next(), b.next(), b.next()], [100, 200, 400, 500]);
    b.reset();
    assert.equal(b.next(), 100);
  });

  it("retry - retries until success, reporting each failure with its delay", async () => {
    const seen: [number, number][] = [];
    const v = await retry(async (attempt) => {
      if (attempt < 3) throw new Error(`fail ${attempt}`);
      return attempt;
    }, { initialMs: 1, maxMs: 2, onError: (_e, attempt, delay) => seen.push([attempt, delay]) });
    assert.equal(v, 3);
    assert.deepEqual(seen, [[1, 1], [2, 2]]);
  });

  it("retry - gives up when told, and when the signal aborts", async () => {
    await assert.rejects(retry(async () => { throw new Error("fatal"); }, { giveUp: () => true }), /fatal/);
    const ac = new AbortController();
    const p = retry(async () => { throw new Error("down"); }, { initialMs: 10_000, signal: ac.signal });
    setTimeout(() => ac.abort(), 20);
    await assert.rejects(p, /down/);
  });

  it("replicas - auto is 1 on a single server, 3 stepping down on a cluster, never more than its servers", () => {
    assert.deepEqual(replicaCandidates(withInfo(undefined), "auto"), [1]);
    assert.deepEqual(replicaCandidates(withInfo({ server_id: "a" }), "auto"), [1]);
    assert.deepEqual(replicaCandidates(withInfo({ cluster: "c", connect_urls: ["a", "b", "c", "d", "e"] }), "auto"), [3, 2, 1]);
    assert.deepEqual(replicaCandidates(withInfo({ cluster: "c", connect_urls: ["a", "b"] }), "auto"), [2, 1]);
    assert.deepEqual(replicaCandidates(withInfo({ cluster: "c" }), 5), [5]);
  });
});
