import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { assessHealth } from "../../src/core/health.js";
import { registerBody } from "../../src/core/register.js";
import { keyValues, table } from "../../src/core/table.js";

describe("cli core", () => {
  it("table - columns aligned two spaces apart, no trailing blanks, newlines flattened", () => {
    assert.equal(table(["ID", "STATUS", "TAGS"], [["a-long-id", "passing", ""], ["b", "critical", "x\ny"]]), "ID         STATUS    TAGS\na-long-id  passing\nb          critical  x y\n");
    assert.equal(table(["A", "B"], []), "A  B\n");
    assert.equal(keyValues([["ready", "yes"], ["self-preservation", "no"]]), "ready              yes\nself-preservation  no\n");
  });

  it("health - ready and not in self-preservation is healthy; each problem is named", () => {
    const ok = { ready: true, natsConnected: true, catalogLoaded: true, selfPreservation: false, lostHosts: 0 };
    assert.deepEqual(assessHealth(ok), { healthy: true, problems: [] });
    const degraded = assessHealth({ ...ok, selfPreservation: true, lostHosts: 7 });
    assert.equal(degraded.healthy, false);
    assert.deepEqual(degraded.problems, ["self-preservation is on (7 hosts lost): instances are not being expired"]);
    assert.deepEqual(assessHealth({ ...ok, ready: false, natsConnected: false }).problems, ["not ready", "not connected to NATS"]);
    assert.deepEqual(assessHealth({ ...ok, ready: false, catalogLoaded: false }).problems, ["not ready", "catalog not loaded from KV"]);
  });

  it("register - flags become the agent's services[] entry", () => {
    assert.deepEqual(
      registerBody({ service: "api", id: "api-1", port: "9001", address: "10.0.0.5", tag: ["a", "b"], meta: ["v=1.2", "k=x=y", "empty="], weight: "50", "check-http": "http://10.0.0.5:9001/health", "check-interval": "5s", "check-timeout": "1s" }),
      {
        ok: true,
        body: {
          name: "api", id: "api-1", port: 9001, address: "10.0.0.5", tags: ["a", "b"], meta: { v: "1.2", k: "x=y", empty: "" }, weight: 50,
          checks: [{ type: "http", url: "http://10.0.0.5:9001/health", interval: "5s", timeout: "1s" }],
        },
      },
    );
    assert.deepEqual(registerBody({ service: "db", port: "5432", "check-tcp": "[::1]:5432", "check-ttl": "30s" }), {
      ok: true,
      body: { name: "db", port: 5432, checks: [{ type: "tcp", host: "::1", port: 5432 }, { type: "ttl", ttl: "30s" }] },
    });
    assert.deepEqual(registerBody({ service: "db", port: "5432" }), { ok: true, body: { name: "db", port: 5432 } });
  });

  it("register - bad flags are named", () => {
    const r = registerBody({ service: "a.b", port: "0", weight: "20000", "check-tcp": "nohost", "check-ttl": "soon" });
    assert.equal(r.ok, false);
    const issues = (r as { issues: string[] }).issues;
    for (const flag of ["--service", "--port", "--weight", "--check-tcp", "--check-ttl"]) assert.ok(issues.some((i) => i.startsWith(`${flag}:`)), `${flag} in ${issues.join("; ")}`);
  });
});
