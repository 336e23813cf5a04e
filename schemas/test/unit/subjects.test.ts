import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { agentSubject, catalogKey, catalogKeyPrefix, catalogSubject, parseAgentSubject, parseCatalogKey } from "../../src/index.js";

describe("subjects", () => {
  it("subjects - builds and parses agent subjects", () => {
    assert.equal(agentSubject("web-1", "heartbeat"), "roster.v1.agent.web-1.heartbeat");
    assert.deepEqual(parseAgentSubject("roster.v1.agent.web-1.health"), { hostId: "web-1", kind: "health" });
  });

  it("subjects - rejects names that would inject subject tokens", () => {
    for (const bad of ["a.b", "*", ">", "a b", "", "a\tb", "-lead"]) {
      assert.throws(() => agentSubject(bad, "register"), /invalid host id/);
      assert.throws(() => catalogSubject(bad), /invalid service/);
      assert.throws(() => catalogKeyPrefix(bad), /invalid service/);
      assert.throws(() => catalogKey(bad, "i-1"), /invalid service/);
      assert.throws(() => catalogKey("orders", bad), /invalid instance id/);
    }
  });

  it("subjects - parseAgentSubject returns null for anything that is not an agent subject", () => {
    for (const s of ["roster.v1.agent.web-1", "roster.v1.agent.web-1.nope", "roster.v2.agent.h.register", "x.v1.agent.h.register", "roster.v1.agent.h.register.extra"]) {
      assert.equal(parseAgentSubject(s), null, s);
    }
  });

  it("subjects - catalog keys round-trip", () => {
    assert.equal(catalogKey("orders", "web-1-8080"), "orders.web-1-8080");
    assert.deepEqual(parseCatalogKey("orders.web-1-8080"), { service: "orders", instanceId: "web-1-8080" });
    assert.equal(parseCatalogKey("orders.a.b"), null);
    assert.equal(catalogKeyPrefix("orders") + "web-1-8080", catalogKey("orders", "web-1-8080"));
  });
});
