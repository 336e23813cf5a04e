import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CatalogDelta, CatalogInstance, decode, encode, type CatalogInstance as Instance } from "roster-schemas";
import { deltaBytes } from "../../src/adapters/store/kv-catalog.js";

const record: Instance = {
  service: "orders", id: "o-1", host: "h-1", address: "10.0.0.1", port: 8080, tags: ["blue"], meta: { team: "pay" }, weight: 100,
  status: "critical", reason: "agent-lost", checks: [], epoch: 1, registeredAt: 1, updatedAt: 2,
};

describe("delta bytes", () => {
  it("delta-bytes - a put wraps the KV record's bytes and decodes to the same delta as the schema's encoding", () => {
    const delta: CatalogDelta = { v: 1, kind: "delta", op: "put", service: "orders", instanceId: "o-1", revision: 42, prevRevision: 7, instance: record };
    const bytes = deltaBytes(delta, encode(CatalogInstance, record));
    const r = decode(CatalogDelta, bytes);
    assert.ok(r.ok, r.ok ? "" : r.error);
    assert.deepEqual(r.value, delta);
    assert.deepEqual(JSON.parse(new TextDecoder().decode(bytes)), JSON.parse(new TextDecoder().decode(encode(CatalogDelta, delta))));
  });

  it("delta-bytes - a delete, or a put without record bytes, goes through the schema (and a bad one throws)", () => {
    const del: CatalogDelta = { v: 1, kind: "delta", op: "delete", service: "orders", instanceId: "o-1", revision: 3, prevRevision: 2 };
    assert.deepEqual(JSON.parse(new TextDecoder().decode(deltaBytes(del, null))), del);
    assert.throws(() => deltaBytes({ ...del, revision: 0 }, null));
    const put: CatalogDelta = { v: 1, kind: "delta", op: "put", service: "orders", instanceId: "o-1", revision: 0, prevRevision: 0, instance: record };
    assert.throws(() => deltaBytes(put, encode(CatalogInstance, record)), "revision 0 is refused, not spliced");
  });
});
