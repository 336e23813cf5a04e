import assert from "node:assert/strict";
import { describe, it } from "node:test";
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
});
