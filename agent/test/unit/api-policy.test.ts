import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ServiceInput } from "../../src/config.js";
import { checkApiRegistration, type ApiCheckPolicy } from "../../src/core/api-policy.js";

const DEFAULT: ApiCheckPolicy = { allowExecChecks: false, checkTargets: "instance" };
const input = (checks: unknown[], extra: Record<string, unknown> = {}) => ServiceInput.parse({ name: "web", port: 8080, address: "10.0.0.5", checks, ...extra });
const verdict = (checks: unknown[], policy = DEFAULT, extra: Record<string, unknown> = {}) => {
  const i = input(checks, extra);
  return checkApiRegistration(i, i.address ?? "10.0.0.5", policy);
};

describe("api policy", () => {
  it("api-policy - exec checks only with allowExecChecks; the refusal names the setting", () => {
    const v = verdict([{ type: "exec", command: ["id"] }]);
    assert.equal(v.ok, false);
    assert.equal(!v.ok && v.code, "ROSTER_EXEC_CHECKS_DISABLED");
    assert.match(!v.ok ? v.message : "", /api\.allowExecChecks/);
    assert.deepEqual(verdict([{ type: "exec", command: ["id"] }], { ...DEFAULT, allowExecChecks: true }), { ok: true });
    // checkTargets any does not turn exec on.
    assert.equal(verdict([{ type: "exec", command: ["id"] }], { allowExecChecks: false, checkTargets: "any" }).ok, false);
  });

  it("api-policy - http/tcp on the instance's own address and port pass (path, same-target url, HEAD, harmless headers)", () => {
    for (const checks of [
      [{ type: "http" }, { type: "tcp" }, { type: "ttl", ttl: "10s" }],
      [{ type: "http", url: "http://10.0.0.5:8080/ready", method: "HEAD", headers: { "x-probe": "1" } }],
      [{ type: "http", url: "https://10.0.0.5:8080/" }],
      [{ type: "tcp", host: "10.0.0.5", port: 8080 }],
      // The own port through this host's loopback is the same probe.
      [{ type: "http", url: "http://127.0.0.1:8080/health" }, { type: "tcp", host: "localhost", port: 8080 }],
    ]) assert.deepEqual(verdict(checks), { ok: true }, JSON.stringify(checks));
  });

  it("api-policy - anything aimed elsewhere is refused with ROSTER_CHECK_TARGET_REFUSED naming api.checkTargets", () => {
    const cases: Array<[unknown[], Record<string, unknown>?]> = [
      [[{ type: "http", url: "http://10.0.0.6:8080/" }]],
      [[{ type: "http", url: "http://10.0.0.5:8081/" }]],
      [[{ type: "http", url: "http://10.0.0.5/" }]],
      [[{ type: "http", url: "http://user:pw@10.0.0.5:8080/" }]],
      [[{ type: "http", method: "POST" }]],
      [[{ type: "http", headers: { Host: "internal" } }]],
      [[{ type: "http", headers: { "metadata-flavor": "Google" } }]],
      [[{ type: "tcp", port: 22 }]],
      [[{ type: "tcp", host: "10.0.0.6" }]],
      [[{ type: "http" }], { address: "169.254.169.254" }],
      [[{ type: "tcp" }], { address: "fe80::1" }],
      [[{ type: "http" }], { address: "metadata.google.internal" }],
    ];
    for (const [checks, extra] of cases) {
      const v = verdict(checks, DEFAULT, extra);
      assert.equal(v.ok, false, JSON.stringify([checks, extra]));
      assert.equal(!v.ok && v.code, "ROSTER_CHECK_TARGET_REFUSED");
      assert.match(!v.ok ? v.message : "", /api\.checkTargets/);
    }
    // No probing check: a link-local address alone is not this rule's business.
    assert.deepEqual(verdict([{ type: "ttl", ttl: "5s" }], DEFAULT, { address: "169.254.1.1" }), { ok: true });
  });

  it("api-policy - checkTargets any allows every target", () => {
    assert.deepEqual(verdict([{ type: "http", url: "http://169.254.169.254/", method: "POST", headers: { Host: "x" } }, { type: "tcp", host: "10.9.9.9", port: 22 }], { allowExecChecks: false, checkTargets: "any" }), { ok: true });
  });
});
