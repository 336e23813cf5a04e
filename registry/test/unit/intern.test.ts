import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CatalogInstance, RegisterMessage, catalogInstanceJson, decode } from "roster-schemas";
import { CatalogState } from "../../src/core/catalog.js";
import { Interner } from "../../src/core/intern.js";

describe("interner", () => {
  it("interner - equal strings and tag lists come back as one shared value; lists are frozen", () => {
    const i = new Interner();
    const a = i.string(["pass", "ing"].join(""));
    const b = i.string(`${"passi"}ng`);
    assert.equal(a, b);
    const l1 = i.list(JSON.parse('["v1","blue"]') as string[]);
    const l2 = i.list(JSON.parse('["v1","blue"]') as string[]);
    assert.equal(l1, l2, "the same array object");
    assert.ok(Object.isFrozen(l1));
    assert.throws(() => (l1 as string[]).push("x"), TypeError, "a shared list cannot be changed by one record");
    assert.deepEqual(i.list([]), []);
    assert.equal(i.list([]), i.list([]));
  });

  it("interner - lists are matched element by element (a one-tag list spelling another list's key stays itself)", () => {
    const i = new Interner();
    const two = i.list(["a", "b"]);
    const one = i.list(['["a","b"]']);
    assert.deepEqual(two, ["a", "b"]);
    assert.deepEqual(one, ['["a","b"]']);
    assert.deepEqual(i.list(["a", "b"]), ["a", "b"]);
    assert.deepEqual(i.list(["a\u0000b", "c"]), ["a\u0000b", "c"]);
    assert.deepEqual(i.list(["a", "b\u0000c"]), ["a", "b\u0000c"]);
  });

  it("interner - empty meta is one shared frozen object; other meta is kept as given", () => {
    const i = new Interner();
    const e1 = i.meta({});
    assert.equal(e1, i.meta({}));
    assert.ok(Object.isFrozen(e1));
    const m = { team: "orders" };
    assert.equal(i.meta(m), m);
  });

  it("interner - bounded: past maxEntries new values are returned as given, not remembered", () => {
    const i = new Interner(2);
    i.string("a");
    i.string("b");
    const c1 = i.string(["c", "1"].join(""));
    assert.equal(c1, "c1", "still the right value");
    const l = ["x"];
    i.list(["p"]);
    i.list(["q"]);
    const r = i.list(l);
    assert.deepEqual(r, ["x"]);
    assert.notEqual(i.list(["x"]), r, "not remembered past the bound");
  });

  it("interner - a record loaded from KV shares its values with the records the state machine registered", () => {
    const interner = new Interner();
    const core = new CatalogState({ heartbeatTimeoutMultiplier: 3, deregisterAfterMs: 60_000, selfPreservation: { threshold: 0.3, minHosts: 3 }, assumedHeartbeatIntervalMs: 1000, interner });
    const inst = (id: string) => ({ id, service: "orders", address: "10.0.0.1", port: 80, tags: ["v1"], meta: {}, weight: 100, status: "passing" as const, checks: [{ id: "http-0", type: "http" as const, status: "passing" as const, since: 1 }] });
    const msg = decode(RegisterMessage, JSON.stringify({ v: 1, kind: "register", hostId: "h1", epoch: 1, seq: 1, sentAt: 1, zone: "eu-1", heartbeatIntervalMs: 1000, instances: [inst("a")] }));
    assert.ok(msg.ok);
    const registered = core.handle(msg.value, 10).flatMap((e) => (e.type === "put" ? [e.record] : []))[0]!;
    // As the store reads it back: the record's KV bytes, decoded.
    const bytes = catalogInstanceJson({ ...registered, id: "b" });
    const decoded = decode(CatalogInstance, bytes);
    assert.ok(decoded.ok);
    const before = JSON.stringify(decoded.value);
    const loaded = interner.record(decoded.value);
    assert.deepEqual(loaded, decoded.value, "the same record");
    assert.equal(JSON.stringify(decoded.value), before, "the decoded record is not changed");
    assert.equal(loaded.tags, registered.tags, "the registered record's tag list");
    assert.equal(loaded.meta, registered.meta, "the shared empty meta");
    assert.notEqual(decoded.value.tags, registered.tags, "(decoding alone gives its own copies)");
    for (const k of ["service", "host", "zone", "status"] as const) assert.ok(loaded[k] !== undefined && loaded[k] === registered[k], k);
    assert.equal(loaded.checks[0]!.type, registered.checks[0]!.type);
    // A second load of the same key shares with the first.
    const again = decode(CatalogInstance, bytes);
    assert.ok(again.ok);
    assert.equal(interner.record(again.value).tags, loaded.tags);
    // Without a zone the record stays without one.
    const noZone = decode(CatalogInstance, catalogInstanceJson({ ...loaded, zone: undefined }));
    assert.ok(noZone.ok);
    assert.ok(!("zone" in interner.record(noZone.value)));
  });
});
