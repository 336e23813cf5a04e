import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { z } from "zod";
import { Duration, formatIssues, instanceDigest, instanceStatus, parseDuration, worstStatus } from "../../src/index.js";

describe("duration", () => {
  it("duration - parses units to milliseconds", () => {
    assert.equal(parseDuration("500ms"), 500);
    assert.equal(parseDuration("1s"), 1000);
    assert.equal(parseDuration("1.5m"), 90_000);
    assert.equal(parseDuration("2h"), 7_200_000);
    assert.equal(parseDuration("1"), null);
    assert.equal(parseDuration("fast"), null);
  });

  it("duration - compound forms add up, largest unit first", () => {
    assert.equal(parseDuration("1m30s"), 90_000);
    assert.equal(parseDuration("1h2m3.5s"), 3_723_500);
    assert.equal(parseDuration("1h30m"), 5_400_000);
    assert.equal(parseDuration("2s500ms"), 2500);
    assert.equal(parseDuration("1h0m0s"), 3_600_000);
    assert.equal(parseDuration(" 1m30s "), 90_000);
  });

  it("duration - compound forms out of order, repeated, spaced or partial are not durations", () => {
    for (const bad of ["30s1m", "1s1s", "1m 30s", "1m30", "m30s", "1m30s5", "1ms1s", "1.m", "-1s", "1m-30s", "", "1".repeat(65) + "s"]) {
      assert.equal(parseDuration(bad), null, bad);
    }
  });

  it("duration - a compound form in a config parses through the zod type", () => {
    assert.equal(Duration.parse("1m30s"), 90_000);
    assert.equal(Duration.safeParse("30s1m").success, false);
  });

  it("duration - a bad duration names its path in the error", () => {
    const Config = z.object({ services: z.array(z.object({ checks: z.array(z.object({ interval: Duration })) })) });
    const r = Config.safeParse({ services: [{ checks: [] }, { checks: [{ interval: "soon" }] }] });
    assert.equal(r.success, false);
    if (r.success) return;
    assert.deepEqual(formatIssues(r.error), ['services[1].checks[0].interval: expected a duration like "1s"']);
  });
});

describe("status", () => {
  it("status - worst of checks, draining wins, no checks is passing", () => {
    assert.equal(worstStatus(["passing", "warning", "passing"]), "warning");
    assert.equal(worstStatus(["warning", "critical"]), "critical");
    assert.equal(instanceStatus(false, []), "passing");
    assert.equal(instanceStatus(true, [{ status: "critical" }]), "draining");
  });

  it("status - the digest ignores order and changes with any status", () => {
    const a = { service: "orders", id: "a", status: "passing" as const, address: "10.0.0.1", port: 80 };
    const b = { service: "orders", id: "b", status: "passing" as const, address: "10.0.0.2", port: 80 };
    assert.equal(instanceDigest([a, b]), instanceDigest([b, a]));
    assert.notEqual(instanceDigest([a, b]), instanceDigest([a, { ...b, status: "critical" }]));
    assert.match(instanceDigest([]), /^[0-9a-f]{16}$/);
  });

  it("status - the digest matches the worked example in docs/protocol.md", () => {
    const digest = instanceDigest([
      { service: "payments", id: "web-1-9090", status: "critical", address: "10.0.0.5", port: 9090 },
      { service: "orders", id: "web-1-8080", status: "passing", address: "10.0.0.5", port: 8080 },
    ]);
    assert.equal(digest, "188c2262ec781577");
    assert.equal(instanceDigest([]), "e3b0c44298fc1c14");
  });
});
