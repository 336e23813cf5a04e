import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CatalogDelta, CatalogInstance, decode, encode, type CatalogInstance as Instance } from "roster-schemas";
import { headers } from "@nats-io/transport-node";
import { deltaBytes, putBytes } from "../../src/adapters/store/kv-catalog.js";
import { plainAckSeq, writeHeaderBytes } from "../../src/adapters/store/stream-writer.js";

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

  it("delta-bytes - putBytes: the record is the KV record, the delta wraps its bytes in the same buffer, as deltaBytes does", () => {
    for (const rec of [record, { ...record, tags: ["ü", "\"q\""], meta: { k: "line\nbreak" }, zone: "z-1" }]) {
      const delta: CatalogDelta = { v: 1, kind: "delta", op: "put", service: "orders", instanceId: "o-1", revision: 42, prevRevision: 7, instance: rec };
      const b = putBytes(delta);
      assert.deepEqual(JSON.parse(Buffer.from(b.record).toString()), JSON.parse(JSON.stringify(rec)));
      assert.ok(b.delta);
      assert.deepEqual(Buffer.from(b.delta), Buffer.from(deltaBytes(delta, b.record)));
      const back = decode(CatalogDelta, b.delta);
      assert.ok(back.ok && back.value.op === "put");
      const stored = decode(CatalogInstance, b.record);
      assert.ok(stored.ok);
      assert.deepEqual(back.value.instance, stored.value);
      assert.equal(b.record.buffer, b.delta.buffer, "one allocation");
    }
  });

  it("delta-bytes - a write's header bytes are what nats.js MsgHdrs encodes for the same headers", () => {
    for (const [seq, del] of [[41, false], [0, false], [123456789, true], [null, true], [null, false]] as const) {
      const h = headers();
      if (seq !== null) h.set("Nats-Expected-Last-Sequence", String(seq));
      if (del) h.set("KV-Operation", "DEL");
      assert.deepEqual(Buffer.from(writeHeaderBytes(seq, del)), Buffer.from((h as unknown as { encode(): Uint8Array }).encode()), `${seq} ${del}`);
    }
  });
  it("delta-bytes - a plain JetStream ack's sequence is read off its bytes; anything else is left to JSON.parse (-1)", () => {
    const b = (s: string) => Buffer.from(s, "utf8");
    assert.equal(plainAckSeq(b('{"stream":"KV_catalog","seq":1}')), 1);
    assert.equal(plainAckSeq(b('{"stream":"KV_catalog", "seq":42}')), 42, "nats-server 2.9's own spacing");
    assert.equal(plainAckSeq(b('{"stream":"KV_catalog", "domain":"hub", "seq":7}')), 7);
    assert.equal(plainAckSeq(b('{"stream":"KV_catalog","seq":9007199254740}')), 9007199254740);
    for (const other of [
      '{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"},"stream":"KV_catalog","seq":4}',
      '{"stream":"KV_catalog","seq":5,"domain":"hub"}',
      '{"stream":"KV_catalog"  "seq":5}',
      '{"stream":"KV_catalog","x":1 "seq":5}',
      '{"stream":"KV_catalog","seq":5,"duplicate":true}',
      '{"stream":"KV_catalog","seq":}',
      '{"stream":"KV_catalog","seq":-5}',
      '{"stream":"KV_catalog","seq":1234567890123456}',
      '{"stream":"KV_catalog","sequence":5}',
      '{"seq":5}',
      "",
      "}",
    ]) assert.equal(plainAckSeq(b(other)), -1, other);
  });
});
