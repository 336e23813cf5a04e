import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ChangeLog } from "../../src/core/change-log.js";

const put = (service: string, id: string, revision: number, prevRevision: number) => ({ service, id, revision, prevRevision, record: { id } });

describe("change log (resume ring)", () => {
  it("change-log - replays the changes after a revision, or null when the ring does not reach back", () => {
    const log = new ChangeLog<{ id: string }>(3);
    log.record(put("a", "x", 5, 2)); // floor 2: everything after 2 is held
    log.record(put("a", "y", 7, 5));
    assert.deepEqual(log.since("a", 2, 7)?.map((c) => c.revision), [5, 7]);
    assert.deepEqual(log.since("a", 5, 7)?.map((c) => c.revision), [7]);
    assert.deepEqual(log.since("a", 7, 7), []);
    assert.equal(log.since("a", 1, 7), null, "before the floor");
    assert.equal(log.since("a", 9, 7), null, "ahead of the service: another catalog");
    log.record(put("a", "x", 8, 7));
    log.record(put("a", "z", 9, 8)); // evicts 5: floor 5
    assert.equal(log.size, 3);
    assert.equal(log.since("a", 2, 9), null);
    assert.deepEqual(log.since("a", 5, 9)?.map((c) => c.revision), [7, 8, 9]);
  });

  it("change-log - a service never seen changing is up to date or needs a snapshot", () => {
    const log = new ChangeLog<{ id: string }>(3);
    assert.deepEqual(log.since("b", 4, 4), []);
    assert.equal(log.since("b", 3, 4), null);
  });

  it("change-log - sinceAll merges services in revision order, null if any service is not covered", () => {
    const log = new ChangeLog<{ id: string }>(2);
    log.record(put("a", "x", 11, 10));
    log.record(put("b", "x", 12, 3));
    log.record(put("a", "y", 13, 11));
    const services = [{ name: "a", revision: 13 }, { name: "b", revision: 12 }, { name: "c", revision: 4 }];
    assert.deepEqual(log.sinceAll(10, services, 13)?.map((c) => c.revision), [11, 12, 13]);
    assert.deepEqual(log.sinceAll(13, services, 13), []);
    assert.equal(log.sinceAll(3, services, 13), null, "c changed at 4, not held");
    assert.equal(log.sinceAll(14, services, 13), null);
    log.record(put("a", "z", 14, 13)); // a's floor → 11
    assert.equal(log.sinceAll(10, [...services, { name: "a", revision: 14 }].slice(1), 14), null);
    assert.throws(() => new ChangeLog(0), RangeError);
  });
});
