import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { encode, HeartbeatMessage } from "roster-schemas";
import { pino } from "pino";
import { DropLog, decodeAgentMessage } from "../../src/adapters/ingest.js";

const te = new TextEncoder();
const hb = (hostId: string) =>
  encode(HeartbeatMessage, { v: 1, kind: "heartbeat", hostId, epoch: 1, seq: 1, sentAt: 0, heartbeatIntervalMs: 1000, instanceCount: 0, digest: "0123456789abcdef" });

describe("registry ingest decoding", () => {
  it("ingest - a valid message on its own subject decodes", () => {
    const r = decodeAgentMessage("roster.v1.agent.h1.heartbeat", hb("h1"));
    assert.ok(r.ok);
    assert.equal(r.msg.kind, "heartbeat");
  });

  it("ingest - every bad case has its reason and kind, and nothing throws", () => {
    const cases: Array<[string, Uint8Array, string, string]> = [
      ["roster.v1.agent.h1.heartbeat", hb("h2"), "host-mismatch", "heartbeat"],
      ["roster.v1.agent.h1.register", hb("h1"), "invalid", "register"],
      ["roster.v1.agent.h1.health", te.encode("nope"), "not-json", "health"],
      ["roster.v1.agent.h1.deregister", new Uint8Array(300 * 1024), "too-large", "deregister"],
      ["roster.v1.agent.h1.evil", hb("h1"), "bad-subject", "unknown"],
      ["roster.v1.agent._x.heartbeat", hb("h1"), "bad-subject", "unknown"],
      ["roster.v1.agent.h1", hb("h1"), "bad-subject", "unknown"],
      ["roster.v1.agent.h1.heartbeat", te.encode("[]"), "invalid", "heartbeat"],
      ["roster.v1.agent.h1.heartbeat", te.encode('{"__proto__":{"x":1}}'), "invalid", "heartbeat"],
    ];
    for (const [subject, data, reason, kind] of cases) {
      const r = decodeAgentMessage(subject, data);
      assert.equal(r.ok, false, subject);
      if (!r.ok) {
        assert.equal(r.reason, reason, subject);
        assert.equal(r.kind, kind, subject);
      }
    }
  });

  it("ingest - drops are counted by reason and kind; the warning is rate limited per reason", () => {
    const lines: unknown[] = [];
    const log = pino({ level: "warn" }, { write: (s: string) => void lines.push(JSON.parse(s)) });
    let t = 0;
    const d = new DropLog(log, 10_000, () => t);
    for (let i = 0; i < 5; i++) d.drop("invalid", "register", {});
    d.drop("not-json", "health", {});
    assert.equal(lines.length, 2);
    t = 10_001;
    d.drop("invalid", "register", {});
    assert.equal(lines.length, 3);
    assert.equal((lines[2] as { suppressed: number }).suppressed, 4);
    assert.deepEqual(d.counters, { total: 7, byReason: { invalid: 6, "not-json": 1 }, byKind: { register: 6, health: 1 } });
  });
});
