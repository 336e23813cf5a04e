// The per-process delta decoder (adapters/shared-decode.ts): byte-equal messages share one
// validated, frozen result; anything else is decoded and validated on its own.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CatalogDelta, encode } from "roster-schemas";
import { SharedDecoder } from "../../src/adapters/shared-decode.js";
import { inst } from "./fixtures.js";

const delta = (revision: number, status: "passing" | "critical" = "passing") =>
  encode(CatalogDelta, { v: 1, kind: "delta", op: "put", service: "svc", instanceId: "a", revision, prevRevision: revision - 1, instance: inst("a", { status }) });

describe("shared decoder", () => {
  it("shared decoder - the same bytes (another buffer) give the same validated, deep-frozen value; other bytes are decoded", () => {
    const d = new SharedDecoder(CatalogDelta, 2);
    const bytes = delta(5);
    const r1 = d.decode(bytes);
    const r2 = d.decode(Uint8Array.from(bytes)); // another gateway's copy of the message
    assert.ok(r1.ok && r2.ok);
    assert.equal(r2, r1);
    assert.deepEqual([d.misses, d.hits], [1, 1]);
    assert.ok(Object.isFrozen(r1.value) && r1.value.op === "put" && Object.isFrozen(r1.value.instance) && Object.isFrozen(r1.value.instance.tags));
    assert.throws(() => {
      (r1.value as { revision: number }).revision = 9;
    }, TypeError);
    bytes[bytes.length - 2] = 0x20; // the caller's buffer changes: the cache kept its own copy
    assert.equal(d.decode(delta(5)), r1);
    const r3 = d.decode(delta(6, "critical"));
    assert.ok(r3.ok && r3.value.revision === 6);
    assert.deepEqual([d.misses, d.hits], [2, 2]);
  });

  it("shared decoder - an invalid message is refused every time (the verdict is cached too), and old entries are evicted", () => {
    const d = new SharedDecoder(CatalogDelta, 2);
    const bad = new TextEncoder().encode(JSON.stringify({ v: 1, kind: "delta", op: "put", service: "svc", instanceId: "a", revision: 0, prevRevision: 0 }));
    for (let i = 0; i < 3; i++) {
      const r = d.decode(bad);
      assert.equal(r.ok, false);
      assert.equal(r.ok ? "" : r.reason, "invalid");
    }
    assert.equal(d.decode(new TextEncoder().encode("{nope")).ok, false);
    assert.deepEqual([d.misses, d.hits], [2, 2]);
    d.decode(delta(7));
    d.decode(delta(8));
    d.decode(bad); // evicted by the two after it (size 2): decoded again
    assert.deepEqual([d.misses, d.hits], [5, 2]);
  });
});
