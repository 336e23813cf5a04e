// The gateway's per-service policy chain: snapshot + full-state deltas, gaps, buffering, LKG.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { PolicyDelta } from "roster-schemas";
import { PolicyChain } from "../../src/core/policy/policy-chain.js";

const doc = (tryMs: string) => ({ timeouts: { try: tryMs } });
const put = (revision: number, prevRevision: number, policy: Record<string, unknown> = doc(`${revision}ms`)): PolicyDelta => ({ v: 1, kind: "policy-delta", op: "put", service: "s", revision, prevRevision, policy });
const del = (revision: number, prevRevision: number): PolicyDelta => ({ v: 1, kind: "policy-delta", op: "delete", service: "s", revision, prevRevision });

describe("policy chain", () => {
  it("policy chain - snapshot, then deltas that chain; durations parsed", () => {
    const c = new PolicyChain();
    c.beginSync();
    assert.equal(c.onSnapshot(3, doc("500ms")), true);
    assert.deepEqual([c.ready, c.revision, c.policy?.timeouts?.try], [true, 3, 500]);
    assert.equal(c.onDelta(put(5, 3)), "applied");
    assert.equal(c.policy?.timeouts?.try, 5);
    assert.deepEqual(c.document, doc("5ms"), "the document as received, for the last-known-good file");
    assert.equal(c.onDelta(del(6, 5)), "applied");
    assert.deepEqual([c.policy, c.revision], [null, 6]);
  });

  it("policy chain - a delta that does not chain is a gap the delta itself heals; older ones are duplicates", () => {
    const c = new PolicyChain();
    c.onSnapshot(0, null);
    assert.equal(c.onDelta(put(9, 7)), "gap-applied");
    assert.deepEqual([c.revision, c.policy?.timeouts?.try, c.counters.gaps], [9, 9, 1]);
    assert.equal(c.onDelta(put(8, 7)), "duplicate", "a late delta from another replica changes nothing");
    assert.equal(c.onDelta(put(9, 7)), "duplicate");
    assert.equal(c.revision, 9);
  });

  it("policy chain - deltas during a snapshot are buffered, then those newer than it applied in order", () => {
    const c = new PolicyChain();
    c.beginSync();
    assert.equal(c.onDelta(put(12, 11)), "buffered");
    assert.equal(c.onDelta(put(10, 4)), "buffered");
    assert.equal(c.onDelta(put(11, 10)), "buffered");
    c.onSnapshot(10, doc("10ms"));
    assert.deepEqual([c.revision, c.policy?.timeouts?.try, c.counters.gaps], [12, 12, 0]);
    // A failed snapshot still applies what was buffered (it is newer than what we hold).
    c.beginSync();
    c.onDelta(put(13, 12));
    assert.equal(c.abortSync(), true);
    assert.equal(c.revision, 13);
  });

  it("policy chain - an invalid policy keeps the previous one in force", () => {
    const c = new PolicyChain();
    c.onSnapshot(2, doc("2ms"));
    assert.equal(c.onDelta(put(3, 2, { timeouts: { try: "never" } })), "invalid");
    assert.deepEqual([c.policy?.timeouts?.try, c.counters.invalid], [2, 1]);
    // Unknown fields from a newer registry are dropped, not fatal.
    assert.equal(c.onDelta(put(4, 3, { ...doc("4ms"), future: true })), "applied");
    assert.equal(c.policy?.timeouts?.try, 4);
  });

  it("policy chain - a last-known-good copy serves until the first snapshot replaces it", () => {
    const c = new PolicyChain();
    assert.equal(c.loadLastKnownGood(7, doc("7ms")), true);
    assert.deepEqual([c.ready, c.fromLastKnownGood, c.policy?.timeouts?.try], [true, true, 7]);
    // Even an older snapshot wins over the file (the registry is the truth).
    c.onSnapshot(5, null);
    assert.deepEqual([c.fromLastKnownGood, c.policy, c.revision], [false, null, 5]);
    assert.equal(c.loadLastKnownGood(9, doc("9ms")), false, "never over a real snapshot");
  });
});
