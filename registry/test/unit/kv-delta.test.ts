import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CatalogDelta, CatalogInstance, PROTOCOL_VERSION, ValidationError, decode, encode, encodeWithJson } from "roster-schemas";
import { putDeltaBytes } from "../../src/adapters/store/kv-catalog.js";

const text = (b: Uint8Array) => Buffer.from(b).toString("utf8");

function record(over: Partial<CatalogInstance> = {}): CatalogInstance {
  return {
    id: "i-1",
    service: "api",
    host: "h-1",
    address: "10.0.0.1",
    port: 8080,
    zone: "z1",
    tags: ["a", "quote\"d"],
    meta: { k: "v\u00e9\n" },
    weight: 100,
    status: "passing",
    checks: [],
    epoch: 1,
    registeredAt: 2,
    updatedAt: 3,
    ...over,
  };
}

describe("catalog put delta around the record's KV JSON", () => {
  it("is byte for byte the delta that zod would encode, and decodes as one", () => {
    for (const r of [record(), record({ zone: undefined, reason: "agent-lost", status: "critical" })]) {
      const { json } = encodeWithJson(CatalogInstance, r);
      const spliced = putDeltaBytes(r.service, r.id, 42, 7, json);
      const viaSchema = encode(CatalogDelta, { v: PROTOCOL_VERSION, kind: "delta", op: "put", service: r.service, instanceId: r.id, revision: 42, prevRevision: 7, instance: r });
      assert.equal(text(spliced), text(viaSchema));
      const d = decode(CatalogDelta, spliced);
      assert.ok(d.ok);
      assert.equal(d.value.op, "put");
    }
  });

  it("is refused above the message size limit, as encode refuses it", () => {
    assert.throws(() => putDeltaBytes("api", "i-1", 1, 0, `{"blob":"${"x".repeat(2_000_000)}"}`), ValidationError);
  });
});
