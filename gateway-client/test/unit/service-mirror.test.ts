// The pure per-service mirror (core/service-mirror.ts): delta chaining, buffering during a
// sync, snapshots older than a held delta, unchainable deltas, last-known-good copies.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { CatalogDelta, CatalogInstance, Snapshot } from "roster-schemas";
import { MAX_SAME_SNAPSHOT_GAPS, ServiceMirror } from "../../src/core/service-mirror.js";

const inst = (id: string, port = 1000): CatalogInstance => ({
  id,
  service: "s",
  host: "h",
  address: "127.0.0.1",
  port,
  tags: [],
  meta: {},
  weight: 100,
  status: "passing",
  checks: [],
  epoch: 1,
  registeredAt: 0,
  updatedAt: port,
});
const put = (id: string, revision: number, prevRevision: number): CatalogDelta => ({ v: 1, kind: "delta", op: "put", service: "s", instanceId: id, revision, prevRevision, instance: inst(id, revision) });
const snap = (revision: number, ids: string[]): Snapshot => ({ v: 1, kind: "snapshot", service: "s", revision, known: true, instances: ids.map((i) => inst(i)) }) as Snapshot;
const fresh = () => {
  const counters = { deltasApplied: 0, duplicates: 0, gaps: 0 };
  return { m: new ServiceMirror("s", 100, counters), counters };
};

describe("service mirror", () => {
  test("service mirror - deltas chain on the last revision; a duplicate is counted, a gap asks for a sync", () => {
    const { m, counters } = fresh();
    m.beginSync();
    assert.deepEqual(m.onSnapshot(snap(5, ["a"])), { kind: "synced", changed: true, dropped: [] });
    const b6 = put("b", 6, 5);
    assert.deepEqual(m.onDelta(b6), { kind: "applied", change: { id: "b", prevRevision: 5, revision: 6, before: undefined, after: b6.op === "put" ? b6.instance : undefined } });
    assert.deepEqual(m.view()!.instances.map((i) => i.id).sort(), ["a", "b"]);
    assert.deepEqual(m.onDelta(put("b", 6, 5)), { kind: "duplicate" });
    assert.deepEqual(m.onDelta(put("c", 9, 8)), { kind: "gap" });
    assert.deepEqual(counters, { deltasApplied: 1, duplicates: 1, gaps: 1 });
    // While syncing, deltas wait; the snapshot then applies those newer than it.
    m.beginSync();
    assert.deepEqual(m.onDelta(put("d", 10, 9)), { kind: "buffered", overflowed: false });
    assert.deepEqual(m.onSnapshot(snap(8, ["a", "b"])), { kind: "synced", changed: true, dropped: [] });
    assert.equal(m.revision, 10);
    assert.deepEqual(m.view()!.instances.map((i) => i.id).sort(), ["a", "b", "c", "d"]);
  });

  test("service mirror - a snapshot older than a held delta is fetched again; after repeats at one revision the delta is dropped", () => {
    const { m } = fresh();
    m.beginSync();
    m.onDelta(put("x", 50, 49)); // chains onto nothing the registry will ever have
    for (let i = 0; i < MAX_SAME_SNAPSHOT_GAPS; i++) assert.deepEqual(m.onSnapshot(snap(3, ["a"])), { kind: "again" });
    const r = m.onSnapshot(snap(3, ["a"]));
    assert.equal(r.kind, "synced");
    assert.deepEqual(r.kind === "synced" ? r.dropped.map((d) => d.instanceId) : [], ["x"]);
    assert.equal(m.revision, 3);
  });

  test("service mirror - an unchanged snapshot is not a change; a full buffer is emptied and says so", () => {
    const { m } = fresh();
    m.beginSync();
    m.onSnapshot(snap(2, ["a"]));
    m.beginSync();
    assert.deepEqual(m.onSnapshot(snap(2, ["a"])), { kind: "synced", changed: false, dropped: [] });
    const small = new ServiceMirror("s", 2, { deltasApplied: 0, duplicates: 0, gaps: 0 });
    small.beginSync();
    small.onDelta(put("a", 1, 0));
    small.onDelta(put("b", 2, 1));
    assert.deepEqual(small.onDelta(put("c", 3, 2)), { kind: "buffered", overflowed: true });
    assert.equal(small.buffer!.length, 1);
  });

  test("service mirror - a last-known-good copy serves until a snapshot, never after one", () => {
    const { m } = fresh();
    assert.equal(m.view(), undefined);
    assert.equal(m.loadCopy([inst("a"), { ...inst("z"), service: "other" }], 7, true), true);
    assert.deepEqual(m.view(), { service: "s", revision: 7, known: true, instances: [inst("a")], fromLastKnownGood: true });
    m.beginSync();
    m.onSnapshot(snap(9, ["b"]));
    assert.equal(m.view()!.fromLastKnownGood, false);
    assert.equal(m.loadCopy([inst("a")], 7, true), false);
    assert.deepEqual(m.view()!.instances.map((i) => i.id), ["b"]);
  });

  test("service mirror - an applied delta says what it changed; the instance list is the same array until the next change", () => {
    const { m } = fresh();
    m.beginSync();
    m.onSnapshot(snap(5, ["a", "b"]));
    const list = m.view()!.instances;
    assert.equal(m.view()!.instances, list, "no change: the same array");
    const a0 = list.find((i) => i.id === "a")!;
    const a6 = put("a", 6, 5);
    const r = m.onDelta(a6);
    assert.equal(r.kind, "applied");
    assert.deepEqual(r.kind === "applied" ? r.change : undefined, { id: "a", prevRevision: 5, revision: 6, before: a0, after: a6.op === "put" ? a6.instance : undefined });
    assert.notEqual(m.view()!.instances, list, "a change: a new array");
    assert.deepEqual(list.map((i) => i.id), ["a", "b"], "an array handed out earlier does not change");
    assert.deepEqual(m.view()!.instances.map((i) => [i.id, i.updatedAt]), [["a", 6], ["b", 1000]], "an update keeps its place");
    const del: CatalogDelta = { v: 1, kind: "delta", op: "delete", service: "s", instanceId: "b", revision: 7, prevRevision: 6 };
    const rd = m.onDelta(del);
    assert.deepEqual(rd.kind === "applied" ? [rd.change.before?.id, rd.change.after] : [], ["b", undefined]);
    assert.deepEqual(m.view()!.instances.map((i) => i.id), ["a"]);
  });
});
