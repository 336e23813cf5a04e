import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AgentMessage, DeregisterMessage, encode, HealthMessage, HeartbeatMessage, instanceDigest, LIMITS, RegisterMessage } from "roster-schemas";
import type { CheckSpec, InstanceSpec } from "../../src/config.js";
import { HostState, type Outbound } from "../../src/core/host.js";
import { AgentError } from "../../src/errors.js";

const http: CheckSpec = { id: "http-0", type: "http", intervalMs: 1000, timeoutMs: 500, successBeforePassing: 1, failuresBeforeCritical: 2, url: "http://127.0.0.1:1/health", method: "GET", headers: {}, tlsSkipVerify: false };
const ttl: CheckSpec = { id: "ttl-1", type: "ttl", intervalMs: 0, timeoutMs: 0, ttlMs: 10_000, successBeforePassing: 1, failuresBeforeCritical: 1 };

function spec(id: string, service = "orders", checks: CheckSpec[] = [http, ttl]): InstanceSpec {
  return { id, service, address: "127.0.0.1", port: 8080, zone: "z1", tags: ["v2"], meta: { version: "1" }, weight: 100, checks };
}

function host() {
  return new HostState({ hostId: "web-1", zone: "z1", epoch: 111, heartbeatIntervalMs: 1000 });
}

function only<T extends Outbound["kind"]>(msgs: Outbound[], kind: T): Extract<Outbound, { kind: T }> {
  assert.equal(msgs.length, 1, JSON.stringify(msgs));
  assert.equal(msgs[0]!.kind, kind);
  return msgs[0] as Extract<Outbound, { kind: T }>;
}

function assertValid(msgs: Outbound[]) {
  for (const m of msgs) {
    assert.ok(AgentMessage.safeParse(m).success, JSON.stringify(m));
    encode(AgentMessage, m);
  }
}

function errCode(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof AgentError);
    return err.code;
  }
  return "no error";
}

describe("host state", () => {
  it("host - upsert returns a register with the full instance set, instances start critical", () => {
    const h = host();
    const r1 = only(h.upsert(spec("a"), 10).messages, "register");
    assert.equal(r1.instances.length, 1);
    const r2 = only(h.upsert(spec("b", "payments", []), 20).messages, "register");
    assert.deepEqual(r2.instances.map((i) => [i.id, i.status]), [["a", "critical"], ["b", "passing"]]);
    assert.equal(r2.zone, "z1");
    assert.equal(r2.heartbeatIntervalMs, 1000);
    assert.equal(r2.epoch, 111);
    assert.equal(r2.sentAt, 20);
    assert.ok(RegisterMessage.safeParse(r2).success);
    assert.deepEqual(r2.instances[0]!.checks.map((c) => [c.id, c.status, c.output]), [["http-0", "critical", "not checked yet"], ["ttl-1", "critical", "no TTL report yet"]]);
  });

  it("host - every message of the epoch takes the next seq", () => {
    const h = host();
    const seqs: number[] = [];
    seqs.push(...h.upsert(spec("a"), 1).messages.map((m) => m.seq));
    seqs.push(h.heartbeat(2).seq);
    seqs.push(...h.checkResult("a", "http-0", { status: "passing" }, 3).map((m) => m.seq));
    seqs.push(...h.setMaintenance("a", true, "deploy", 4).map((m) => m.seq));
    seqs.push(...h.remove("a", 5).map((m) => m.seq));
    seqs.push(h.register(6).seq);
    assert.deepEqual(seqs, [1, 2, 3, 4, 5, 6, 7]);
    assert.equal(h.lastSeq, 7);
  });

  it("host - a check flip yields one health message with the instance's new status", () => {
    const h = host();
    h.upsert(spec("a"), 1);
    const m1 = only(h.checkResult("a", "http-0", { status: "passing", output: "HTTP 200" }, 5), "health");
    assert.equal(m1.instanceStatus, "critical", "the ttl check is still critical");
    assert.deepEqual(m1.check, { id: "http-0", type: "http", status: "passing", output: "HTTP 200", since: 5 });
    assert.equal(m1.service, "orders");
    assert.equal(m1.instanceId, "a");
    assert.ok(HealthMessage.safeParse(m1).success);
    const m2 = only(h.checkResult("a", "ttl-1", { status: "passing" }, 6), "health");
    assert.equal(m2.instanceStatus, "passing");
  });

  it("host - a result that does not flip yields nothing (edge-triggered)", () => {
    const h = host();
    h.upsert(spec("a"), 1);
    h.checkResult("a", "http-0", { status: "passing" }, 2);
    assert.deepEqual(h.checkResult("a", "http-0", { status: "passing" }, 3), []);
    assert.deepEqual(h.checkResult("a", "http-0", { status: "critical" }, 4), [], "fall 2: first failure is absorbed");
    only(h.checkResult("a", "http-0", { status: "critical" }, 5), "health");
  });

  it("host - results for unknown instances or checks are ignored", () => {
    const h = host();
    h.upsert(spec("a"), 1);
    assert.deepEqual(h.checkResult("zz", "http-0", { status: "passing" }, 2), []);
    assert.deepEqual(h.checkResult("a", "zz", { status: "passing" }, 2), []);
    assert.equal(h.lastSeq, 1);
  });

  it("host - instance status is the worst check; no checks is passing", () => {
    const h = host();
    h.upsert(spec("a"), 1);
    h.checkResult("a", "http-0", { status: "passing" }, 2);
    h.checkResult("a", "ttl-1", { status: "warning" }, 3);
    assert.equal(h.list()[0]!.status, "warning");
    h.upsert(spec("b", "x", []), 4);
    assert.equal(h.list()[1]!.status, "passing");
  });

  it("host - maintenance makes an instance draining and publishes a register; idempotent", () => {
    const h = host();
    h.upsert(spec("a", "orders", []), 1);
    const r = only(h.setMaintenance("a", true, "deploy", 2), "register");
    assert.equal(r.instances[0]!.status, "draining");
    assert.deepEqual(h.setMaintenance("a", true, "deploy", 3), []);
    assert.equal(h.list()[0]!.maintenanceReason, "deploy");
    const off = only(h.setMaintenance("a", false, undefined, 4), "register");
    assert.equal(off.instances[0]!.status, "passing");
    assert.equal(h.list()[0]!.maintenanceReason, undefined);
  });

  it("host - a flip during maintenance reports draining as the instance status", () => {
    const h = host();
    h.upsert(spec("a"), 1);
    h.setMaintenance("a", true, undefined, 2);
    const m = only(h.checkResult("a", "http-0", { status: "passing" }, 3), "health");
    assert.equal(m.instanceStatus, "draining");
  });

  it("host - remove yields a deregister (reason api) then the new full set", () => {
    const h = host();
    h.upsert(spec("a"), 1);
    h.upsert(spec("b"), 1);
    const msgs = h.remove("a", 2);
    assert.equal(msgs.length, 2);
    const [d, r] = msgs;
    assert.ok(d?.kind === "deregister" && r?.kind === "register");
    assert.deepEqual(d.instances, [{ service: "orders", instanceId: "a" }]);
    assert.equal(d.reason, "api");
    assert.ok(DeregisterMessage.safeParse(d).success);
    assert.deepEqual(r.instances.map((i) => i.id), ["b"]);
    assert.equal(errCode(() => h.remove("a", 3)), "ROSTER_NOT_FOUND");
  });

  it("host - re-registering keeps check state and maintenance; changed checks start over", () => {
    const h = host();
    h.upsert(spec("a"), 1);
    h.checkResult("a", "http-0", { status: "passing" }, 2);
    h.setMaintenance("a", true, "x", 3);
    const { replaced } = h.upsert(spec("a"), 4);
    assert.equal(replaced, true);
    const v = h.list()[0]!;
    assert.equal(v.maintenance, true);
    assert.equal(v.checks[0]!.status, "passing");
    assert.equal(v.registeredAt, 1);
    h.upsert(spec("a", "orders", [{ ...http, failuresBeforeCritical: 5 }]), 5);
    assert.equal(h.list()[0]!.checks[0]!.status, "critical");
  });

  it("host - an id taken by another service is a conflict", () => {
    const h = host();
    h.upsert(spec("a", "orders"), 1);
    assert.equal(errCode(() => h.upsert(spec("a", "payments"), 2)), "ROSTER_CONFLICT");
  });

  it("host - the instance limit is enforced", () => {
    const h = host();
    for (let i = 0; i < LIMITS.maxInstancesPerHost; i++) h.upsert(spec(`i${i}`, "s", []), 1);
    assert.equal(errCode(() => h.upsert(spec("one-more", "s", []), 2)), "ROSTER_LIMIT");
    h.upsert(spec("i0", "s", []), 3); // replacing is fine
  });

  it("host - shutdown: everything drains once, then a deregister for all; new instances refused", () => {
    const h = host();
    h.upsert(spec("a"), 1);
    h.upsert(spec("b", "payments", []), 1);
    const r = only(h.beginShutdown(2), "register");
    assert.deepEqual(r.instances.map((i) => i.status), ["draining", "draining"]);
    assert.deepEqual(h.beginShutdown(3), []);
    assert.equal(h.draining, true);
    assert.equal(errCode(() => h.upsert(spec("c"), 4)), "ROSTER_SHUTTING_DOWN");
    const d = only(h.shutdownDeregister(5), "deregister");
    assert.equal(d.reason, "shutdown");
    assert.deepEqual(d.instances, [{ service: "orders", instanceId: "a" }, { service: "payments", instanceId: "b" }]);
    assert.deepEqual(new HostState({ hostId: "h", epoch: 1, heartbeatIntervalMs: 1000 }).shutdownDeregister(1), []);
  });

  it("host - heartbeat carries count and the schemas digest of the instance states", () => {
    const h = host();
    h.upsert(spec("a", "orders", []), 1);
    const hb = h.heartbeat(9);
    assert.ok(HeartbeatMessage.safeParse(hb).success);
    assert.equal(hb.instanceCount, 1);
    assert.equal(hb.digest, instanceDigest([{ service: "orders", id: "a", status: "passing", address: "127.0.0.1", port: 8080 }]));
    h.setMaintenance("a", true, undefined, 10);
    assert.notEqual(h.heartbeat(11).digest, hb.digest, "status is part of the digest");
    assert.equal(new HostState({ hostId: "h", epoch: 1, heartbeatIntervalMs: 1000 }).heartbeat(1).instanceCount, 0);
  });

  it("host - ttlCheck finds ttl checks and rejects the others", () => {
    const h = host();
    h.upsert(spec("a"), 1);
    assert.equal(h.ttlCheck("a", "ttl-1").ttlMs, 10_000);
    assert.equal(errCode(() => h.ttlCheck("a", "http-0")), "ROSTER_NOT_TTL");
    assert.equal(errCode(() => h.ttlCheck("a", "nope")), "ROSTER_NOT_FOUND");
    assert.equal(errCode(() => h.ttlCheck("nope", "ttl-1")), "ROSTER_NOT_FOUND");
  });

  it("host - every message produced validates against the wire schema", () => {
    const h = host();
    const all: Outbound[] = [];
    all.push(...h.upsert(spec("a"), 1).messages);
    all.push(...h.checkResult("a", "http-0", { status: "passing", output: "x".repeat(5000) }, 2));
    all.push(...h.setMaintenance("a", true, "r", 3));
    all.push(h.heartbeat(4));
    all.push(...h.beginShutdown(5));
    all.push(...h.shutdownDeregister(6));
    all.push(...h.remove("a", 7));
    assertValid(all);
  });
});
