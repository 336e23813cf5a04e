import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  instanceDigest,
  type CatalogInstance,
  type DeregisterMessage,
  type HealthMessage,
  type HeartbeatMessage,
  type InstanceRegistration,
  type RegisterMessage,
} from "roster-schemas";
import { CatalogState, sameRecord, type Effect } from "../../src/core/catalog.js";

const OPTS = {
  heartbeatTimeoutMultiplier: 3,
  deregisterAfterMs: 60_000,
  selfPreservation: { threshold: 0.5, minHosts: 3 },
  assumedHeartbeatIntervalMs: 5000,
};
const HB = 1000;

function inst(id: string, over: Partial<InstanceRegistration> = {}): InstanceRegistration {
  return { id, service: "orders", address: "10.0.0.1", port: 8080, tags: [], meta: {}, weight: 100, status: "passing", checks: [], ...over };
}

class Agent {
  seq = 0;
  constructor(readonly hostId: string, public epoch = 1) {}
  register(instances: InstanceRegistration[], over: Partial<RegisterMessage> = {}): RegisterMessage {
    return { v: 1, kind: "register", hostId: this.hostId, epoch: this.epoch, seq: ++this.seq, sentAt: 0, heartbeatIntervalMs: HB, instances, ...over };
  }
  heartbeat(digest: string, over: Partial<HeartbeatMessage> = {}): HeartbeatMessage {
    return { v: 1, kind: "heartbeat", hostId: this.hostId, epoch: this.epoch, seq: ++this.seq, sentAt: 0, heartbeatIntervalMs: HB, instanceCount: 0, digest, ...over };
  }
  health(instanceId: string, status: "passing" | "warning" | "critical", over: Partial<HealthMessage> = {}): HealthMessage {
    return {
      v: 1, kind: "health", hostId: this.hostId, epoch: this.epoch, seq: ++this.seq, sentAt: 0, service: "orders", instanceId,
      check: { id: "http-0", type: "http", status, since: 0 }, instanceStatus: status, ...over,
    };
  }
  deregister(ids: string[], reason: DeregisterMessage["reason"] = "api"): DeregisterMessage {
    return { v: 1, kind: "deregister", hostId: this.hostId, epoch: this.epoch, seq: ++this.seq, sentAt: 0, reason, instances: ids.map((instanceId) => ({ service: "orders", instanceId })) };
  }
}

const puts = (e: Effect[]) => e.filter((x): x is Extract<Effect, { type: "put" }> => x.type === "put");
const dels = (e: Effect[]) => e.filter((x): x is Extract<Effect, { type: "delete" }> => x.type === "delete");
const rejects = (e: Effect[]) => e.filter((x): x is Extract<Effect, { type: "reject" }> => x.type === "reject").map((x) => x.reason);
const degradedFx = (e: Effect[]) => e.filter((x): x is Extract<Effect, { type: "degraded" }> => x.type === "degraded");
const resyncs = (e: Effect[]) => e.filter((x): x is Extract<Effect, { type: "resync" }> => x.type === "resync");

function digestOf(state: CatalogState, host: string): string {
  return state.digestOf(host);
}

describe("catalog core", () => {
  it("catalog - heartbeats are ordered apart from transitions: a health read after a later heartbeat still applies; a beat older than the last transition asks nothing", () => {
    const c = new CatalogState(OPTS);
    const a = new Agent("h-order");
    c.handle(a.register([inst("o1")]), 0); // seq 1
    const flip = a.health("o1", "critical"); // seq 2
    const later = a.heartbeat("digest-after-the-flip"); // seq 3, read first (another connection)
    c.handle(later, 10);
    const applied = c.handle(flip, 11);
    assert.equal(c.record("orders", "o1")?.status, "critical", "the transition is not refused as out-of-order");
    assert.ok(applied.some((e) => e.type === "put"));
    const b = new Agent("h-order-2");
    c.handle(b.register([inst("p1")]), 20); // seq 1
    const before = b.heartbeat("digest-before-the-flip"); // seq 2, read after the flip
    c.handle(b.health("p1", "critical"), 21); // seq 3
    assert.deepEqual(c.handle(before, 22).filter((e) => e.type !== "put"), [], "no resync for a beat older than the last transition");
    const reasons = (es: Effect[]) => es.filter((e) => e.type === "reject").map((e) => (e as { reason: string }).reason);
    assert.deepEqual(reasons(c.handle(before, 23)), ["duplicate"], "beats are still ordered among themselves");
    assert.deepEqual(reasons(c.handle(flip, 24)), ["duplicate"], "transitions too");
  });

  it("catalog - register puts each instance, passing, with host and epoch", () => {
    const s = new CatalogState(OPTS);
    const a = new Agent("h1");
    const e = s.handle(a.register([inst("a"), inst("b", { zone: "z1" })], { zone: "z0" }), 1000);
    assert.equal(puts(e).length, 2);
    const r = s.record("orders", "a")!;
    assert.equal(r.host, "h1");
    assert.equal(r.status, "passing");
    assert.equal(r.zone, "z0", "host zone is the default");
    assert.equal(s.record("orders", "b")!.zone, "z1", "instance zone wins");
    assert.equal(r.registeredAt, 1000);
  });

  it("catalog - an identical register writes nothing", () => {
    const s = new CatalogState(OPTS);
    const a = new Agent("h1");
    s.handle(a.register([inst("a")]), 1000);
    const e = s.handle(a.register([inst("a")]), 2000);
    assert.deepEqual(e, []);
    assert.equal(s.record("orders", "a")!.updatedAt, 1000);
  });

  it("catalog - a register is the full set: absent instances are deleted", () => {
    const s = new CatalogState(OPTS);
    const a = new Agent("h1");
    s.handle(a.register([inst("a"), inst("b")]), 1000);
    const e = s.handle(a.register([inst("a")]), 2000);
    assert.deepEqual(dels(e), [{ type: "delete", service: "orders", id: "b" }]);
    assert.equal(puts(e).length, 0);
  });

  it("catalog - a changed field is one put with a new updatedAt and the same registeredAt", () => {
    const s = new CatalogState(OPTS);
    const a = new Agent("h1");
    s.handle(a.register([inst("a")]), 1000);
    const e = s.handle(a.register([inst("a", { port: 9090 })]), 2000);
    assert.equal(puts(e).length, 1);
    assert.equal(puts(e)[0]!.record.port, 9090);
    assert.equal(puts(e)[0]!.record.updatedAt, 2000);
    assert.equal(puts(e)[0]!.record.registeredAt, 1000);
  });

  it("catalog - a new epoch replaces the host's set", () => {
    const s = new CatalogState(OPTS);
    const a = new Agent("h1", 1);
    s.handle(a.register([inst("a"), inst("b")]), 1000);
    const b = new Agent("h1", 2);
    const e = s.handle(b.register([inst("b")]), 2000);
    assert.deepEqual(dels(e).map((d) => d.id), ["a"]);
    assert.equal(puts(e).length, 1, "b is rewritten with the new epoch");
    assert.equal(s.record("orders", "b")!.epoch, 2);
    assert.equal(s.record("orders", "b")!.registeredAt, 2000);
  });

  it("catalog - an older epoch is stale and ignored (counted)", () => {
    const s = new CatalogState(OPTS);
    s.handle(new Agent("h1", 5).register([inst("a")]), 1000);
    const old = new Agent("h1", 4);
    old.seq = 100;
    const stale = [{ type: "reject", reason: "stale-epoch", hostId: "h1", kind: "register" }];
    assert.deepEqual(s.handle(old.register([]), 2000), stale, "nothing but the counted rejection");
    assert.deepEqual(rejects(s.handle(old.health("a", "critical"), 2000)), ["stale-epoch"]);
    assert.deepEqual(rejects(s.handle(old.deregister(["a"]), 2000)), ["stale-epoch"]);
    assert.equal(s.counters.stale, 3);
    assert.ok(s.record("orders", "a"));
  });

  it("catalog - duplicates and reorders (seq not greater) are ignored, on every kind", () => {
    const s = new CatalogState(OPTS);
    const a = new Agent("h1");
    const reg = a.register([inst("a")]);
    s.handle(reg, 1000);
    const crit = a.health("a", "critical");
    assert.equal(puts(s.handle(crit, 1100)).length, 1);
    assert.deepEqual(s.handle(crit, 1200), [{ type: "reject", reason: "duplicate", hostId: "h1", kind: "health" }], "duplicate health");
    assert.deepEqual(s.handle({ ...reg, instances: [] }, 1300), [{ type: "reject", reason: "out-of-order", hostId: "h1", kind: "register" }], "older register in same epoch");
    assert.equal(s.counters.duplicate, 2);
    assert.equal(s.record("orders", "a")!.status, "critical");
  });

  it("catalog - health sets the check and the instance status; same status again writes nothing", () => {
    const s = new CatalogState(OPTS);
    const a = new Agent("h1");
    s.handle(a.register([inst("a")]), 1000);
    const e = s.handle(a.health("a", "critical"), 1500);
    assert.equal(puts(e).length, 1);
    const r = s.record("orders", "a")!;
    assert.equal(r.status, "critical");
    assert.deepEqual(r.checks.map((c) => [c.id, c.status]), [["http-0", "critical"]]);
    assert.deepEqual(s.handle(a.health("a", "critical"), 1600), []);
    const back = s.handle(a.health("a", "passing"), 1700);
    assert.equal(puts(back)[0]!.record.status, "passing");
    assert.equal(s.record("orders", "a")!.checks.length, 1, "check replaced by id, not appended");
  });

  it("catalog - health for an unknown instance asks that host for a resync", () => {
    const s = new CatalogState(OPTS);
    const a = new Agent("h1");
    s.handle(a.register([inst("a")]), 1000);
    const e = s.handle(a.health("zzz", "critical"), 1100);
    assert.deepEqual(e, [
      { type: "reject", reason: "unknown-instance", hostId: "h1", kind: "health" },
      { type: "resync", hostId: "h1", reason: "digest-mismatch" },
    ]);
    assert.equal(s.counters.unknownInstance, 1);
  });

  it("catalog - health from an unknown host asks for a resync", () => {
    const s = new CatalogState(OPTS);
    const e = s.handle(new Agent("ghost").health("a", "critical"), 1000);
    assert.deepEqual(e, [
      { type: "reject", reason: "unknown-host", hostId: "ghost", kind: "health" },
      { type: "resync", hostId: "ghost", reason: "unknown-host" },
    ]);
  });

  it("catalog - a steady heartbeat with a matching digest writes nothing", () => {
    const s = new CatalogState(OPTS);
    const a = new Agent("h1");
    s.handle(a.register([inst("a"), inst("b")]), 1000);
    const d = instanceDigest([
      { service: "orders", id: "a", status: "passing", address: "10.0.0.1", port: 8080 },
      { service: "orders", id: "b", status: "passing", address: "10.0.0.1", port: 8080 },
    ]);
    assert.equal(digestOf(s, "h1"), d);
    for (let t = 2000; t < 10_000; t += 1000) assert.deepEqual(s.handle(a.heartbeat(d), t), []);
    assert.equal(s.host("h1")!.lastSeen, 9000);
  });

  it("catalog - the cached digest follows every change of a host (health, refused claim, deregister)", () => {
    const s = new CatalogState(OPTS);
    const line = (id: string, status: "passing" | "critical") => ({ service: "orders", id, status, address: "10.0.0.1", port: 8080 });
    const a = new Agent("h1");
    const b = new Agent("h2");
    s.handle(a.register([inst("a"), inst("b")]), 1000);
    assert.equal(digestOf(s, "h1"), instanceDigest([line("a", "passing"), line("b", "passing")]));
    s.handle(a.health("a", "critical"), 1100);
    assert.equal(digestOf(s, "h1"), instanceDigest([line("a", "critical"), line("b", "passing")]));
    s.handle(b.register([inst("b")]), 1200); // h1 owns b: h2's claim is refused but counts in h2's digest
    assert.equal(digestOf(s, "h1"), instanceDigest([line("a", "critical"), line("b", "passing")]));
    assert.equal(digestOf(s, "h2"), instanceDigest([line("b", "passing")]));
    // h1 lets b go: h2 (the claimant) is asked for its registration.
    assert.deepEqual(resyncs(s.handle(a.deregister(["a", "b"]), 1300)).map((r) => r.reason), ["ownership-free"]);
    assert.equal(digestOf(s, "h1"), instanceDigest([]));
    // A heartbeat with the current digest is quiet; with the stale one it asks for a resync.
    assert.deepEqual(s.handle(b.heartbeat(instanceDigest([line("b", "passing")])), 1400), []);
    // (h2 was just asked for its registration, which has not come: it is asked again only 10 s later.)
    assert.equal(resyncs(s.handle(b.heartbeat(instanceDigest([line("b", "critical")])), 3500)).length, 0);
    assert.equal(resyncs(s.handle(b.heartbeat(instanceDigest([line("b", "critical")])), 11_300)).length, 1);
  });

  it("catalog - a digest mismatch asks for a resync once; again only after its register (then at most once per 2 × interval) or after 10 × interval (≥ 10 s) without one", () => {
    const s = new CatalogState(OPTS);
    const a = new Agent("h1");
    s.handle(a.register([inst("a")]), 1000);
    assert.equal(resyncs(s.handle(a.heartbeat("0000000000000000"), 2000)).length, 1);
    assert.equal(resyncs(s.handle(a.heartbeat("0000000000000000"), 2500)).length, 0);
    // Its register has not come (a backlog): every beat still disagrees, and is not asked again.
    assert.equal(resyncs(s.handle(a.heartbeat("0000000000000000"), 4000)).length, 0);
    assert.equal(resyncs(s.handle(a.heartbeat("0000000000000000"), 11_999)).length, 0);
    // 10 s without it: the request may have been lost on the way.
    assert.equal(resyncs(s.handle(a.heartbeat("0000000000000000"), 12_000)).length, 1);
    // The register came: a divergence after it asks again once 2 × interval has passed.
    s.handle(a.register([inst("a")]), 12_100);
    assert.equal(resyncs(s.handle(a.heartbeat("0000000000000000"), 13_000)).length, 0);
    assert.equal(resyncs(s.handle(a.heartbeat("0000000000000000"), 14_000)).length, 1);
    assert.equal(s.counters.resyncSuppressed, 4);
  });

  it("catalog - a heartbeat from an unknown host asks for a resync (rate limited)", () => {
    const s = new CatalogState(OPTS);
    const a = new Agent("h9");
    assert.deepEqual(s.handle(a.heartbeat("0000000000000000"), 1000), [{ type: "resync", hostId: "h9", reason: "unknown-host" }]);
    assert.deepEqual(s.handle(a.heartbeat("0000000000000000"), 1500), []);
    assert.equal(s.summary().hosts, 0, "a heartbeat alone does not create a host");
  });

  it("catalog - silence: after multiplier × interval every instance becomes critical agent-lost, once", () => {
    const s = new CatalogState(OPTS);
    const a = new Agent("h1");
    s.handle(a.register([inst("a"), inst("b")]), 0);
    assert.deepEqual(s.tick(3000), [], "exactly 3 intervals is not yet lost");
    const e = s.tick(3001);
    assert.equal(puts(e).length, 2);
    for (const p of puts(e)) {
      assert.equal(p.record.status, "critical");
      assert.equal(p.record.reason, "agent-lost");
    }
    assert.deepEqual(s.tick(4000), [], "marked once");
  });

  it("catalog - silence is judged at the time the registry has read up to, not at the processing clock (its own lag is not the host's silence)", () => {
    const s = new CatalogState(OPTS);
    const live = new Agent("h-live");
    const silent = new Agent("h-silent");
    s.handle(live.register([inst("l")]), 0);
    s.handle(silent.register([inst("s", { service: "pay" })]), 0);
    // The registry's event loop stalls from 1000 to 9000: live's heartbeats (sent every second)
    // sit unread in the socket. The last probe back was sent at 1000.
    assert.deepEqual(s.tick(9000, 1000), [], "9 s of processing clock, but everything was read up to 1000 only");
    assert.deepEqual(s.tick(9000, null), [], "not caught up yet: nobody is judged");
    // The backlog is read (every live heartbeat, at processing time 9001), then a probe sent at 9000 returns.
    s.handle(live.heartbeat(digestOf(s, "h-live")), 9001);
    const e = s.tick(9050, 9000);
    assert.deepEqual(puts(e).map((p) => [p.record.id, p.record.reason]), [["s", "agent-lost"]], "only the truly silent host is lost");
    assert.equal(s.host("h-live")!.lostAt, null);
    // Never judged later than now, even if told so.
    const t = new CatalogState(OPTS);
    t.handle(new Agent("h2").register([inst("x")]), 0);
    assert.deepEqual(t.tick(3000, 99_999), [], "a caught-up time ahead of now is capped at now");
  });

  it("catalog - a message from a lost host revives it and asks for a resync; register restores statuses", () => {
    const s = new CatalogState(OPTS);
    const a = new Agent("h1");
    s.handle(a.register([inst("a")]), 0);
    s.tick(5000);
    const hb = s.handle(a.heartbeat("0000000000000000"), 6000);
    assert.deepEqual(resyncs(hb).map((r) => r.reason), ["digest-mismatch"]);
    assert.equal(s.host("h1")!.lostAt, null);
    const e = s.handle(a.register([inst("a")]), 6100);
    assert.equal(puts(e).length, 1);
    assert.equal(puts(e)[0]!.record.status, "passing");
    assert.equal(puts(e)[0]!.record.reason, undefined);
    assert.deepEqual(s.tick(6100 + 2999), [], "revived host gets a fresh silence window");
  });

  it("catalog - a host back from silence with the digest it had before gets its records back as they were, with no resync", () => {
    const s = new CatalogState(OPTS);
    const a = new Agent("h1");
    s.handle(a.register([inst("a", { tags: ["v2"] }), inst("b", { status: "warning" })]), 0);
    const before = s.digestOf("h1");
    const was = [s.record("orders", "a")!, s.record("orders", "b")!];
    const lost = puts(s.tick(5000));
    assert.equal(lost.length, 2);
    assert.notEqual(s.digestOf("h1"), before, "the lost records have another digest (critical)");
    const e = s.handle(a.heartbeat(before), 6000);
    assert.deepEqual(resyncs(e), [], "nothing changed at the host: no register asked");
    assert.deepEqual(
      puts(e).map((p) => p.record),
      was.map((r) => ({ ...r, updatedAt: 6000 })),
      "each record exactly as before the silence (status, tags, checks; no reason)",
    );
    assert.equal(s.counters.revived, 1);
    assert.equal(s.host("h1")!.lostAt, null);
    assert.deepEqual(s.handle(a.heartbeat(before), 7000), [], "and its next beat matches");
    assert.deepEqual(s.tick(6000 + 3000), [], "a fresh silence window");
    // Lost a second time: the same again (what was kept is from just before this silence).
    s.handle(a.health("a", "critical"), 9500);
    const beforeSecond = s.digestOf("h1");
    s.tick(13_000);
    const again = s.handle(a.heartbeat(beforeSecond), 14_000);
    assert.deepEqual(resyncs(again), []);
    assert.equal(s.record("orders", "a")?.status, "critical", "the health applied before the second silence stands");
    assert.equal(s.record("orders", "b")?.status, "warning");
  });

  it("catalog - a host back from silence asks for a resync unless a current beat of the same epoch vouches for it", () => {
    const back = (first: (a: Agent, digest: string) => RegisterMessage | HeartbeatMessage | HealthMessage | DeregisterMessage) => {
      const s = new CatalogState(OPTS);
      const a = new Agent("h1");
      s.handle(a.register([inst("a"), inst("b")]), 0);
      const digest = s.digestOf("h1");
      s.tick(5000);
      const e = s.handle(first(a, digest), 6000);
      return { s, e };
    };
    const changed = back((a) => a.heartbeat(instanceDigest([{ service: "orders", id: "a", status: "passing", address: "10.0.0.1", port: 8080 }])));
    assert.deepEqual(resyncs(changed.e).map((r) => r.reason), ["digest-mismatch"], "a changed digest (an instance gone during the silence)");
    assert.deepEqual(puts(changed.e), [], "nothing restored: the register will say what is true");
    assert.equal(changed.s.record("orders", "a")?.reason, "agent-lost");
    assert.equal(changed.s.counters.revived, 0);
    const health = back((a) => a.health("a", "critical"));
    assert.deepEqual(resyncs(health.e).map((r) => r.reason), ["digest-mismatch"], "a health first: the other instances are unknown");
    assert.equal(health.s.record("orders", "b")?.reason, "agent-lost");
    const restarted = back((a, digest) => {
      a.epoch = 2;
      a.seq = 0;
      return a.heartbeat(digest);
    });
    assert.deepEqual(resyncs(restarted.e).map((r) => r.reason), ["digest-mismatch"], "a new epoch: the agent restarted");
    // A beat sent before the last transition the registry applied (read late, on another connection).
    const stale = back((a, digest) => a.heartbeat(digest, { seq: 1 }));
    assert.deepEqual(resyncs(stale.e).map((r) => r.reason), ["digest-mismatch"], "a beat older than the last transition cannot vouch");
    assert.deepEqual(puts(stale.e), []);
  });

  it("catalog - expiry: an agent-lost instance is deleted after deregisterAfter, and the host forgotten", () => {
    const s = new CatalogState(OPTS);
    const a = new Agent("h1");
    s.handle(a.register([inst("a")]), 0);
    s.tick(3001);
    assert.deepEqual(s.tick(3001 + 60_000), []);
    const e = s.tick(3002 + 60_000);
    assert.deepEqual(dels(e).map((d) => d.id), ["a"]);
    assert.equal(s.summary().hosts, 0);
    assert.equal(s.counters.expired, 1);
  });

  it("catalog - an instance its live agent reports critical never expires", () => {
    const s = new CatalogState(OPTS);
    const a = new Agent("h1");
    s.handle(a.register([inst("a")]), 0);
    s.handle(a.health("a", "critical"), 10);
    const d = digestOf(s, "h1");
    for (let t = 1000; t < 200_000; t += 1000) {
      assert.deepEqual(s.handle(a.heartbeat(d), t), []);
      assert.deepEqual(s.tick(t + 1), []);
    }
    assert.equal(s.record("orders", "a")!.status, "critical");
  });

  it("catalog - self-preservation: a mass silence marks agent-lost but expires nothing, then recovers", () => {
    const s = new CatalogState(OPTS);
    const agents = ["h1", "h2", "h3", "h4"].map((h) => new Agent(h));
    agents.forEach((a, i) => s.handle(a.register([inst(`i${i}`)]), 0));
    // h4 keeps beating; h1-h3 go silent: 3 of 4 > 0.5 and >= 3.
    const beat = (t: number) => s.handle(agents[3]!.heartbeat(digestOf(s, "h4")), t);
    for (let t = 1000; t <= 4000; t += 1000) beat(t);
    const lost = s.tick(4000);
    assert.equal(puts(lost).length, 3);
    assert.equal(s.selfPreservation, true);
    for (let t = 5000; t < 200_000; t += 1000) {
      beat(t);
      assert.equal(dels(s.tick(t)).length, 0);
    }
    assert.equal(s.summary().instances, 4);
    // h1 comes back: 2 of 4 silent is not more than half -> mode off, the other two expire.
    s.handle(agents[0]!.register([inst("i0")]), 200_000);
    const e = s.tick(200_001);
    assert.equal(s.selfPreservation, false);
    assert.deepEqual(dels(e).map((d) => d.id).sort(), ["i1", "i2"]);
  });

  it("catalog - self-preservation needs at least minHosts silent hosts", () => {
    const s = new CatalogState(OPTS);
    const a = new Agent("h1");
    const b = new Agent("h2");
    s.handle(a.register([inst("a")]), 0);
    s.handle(b.register([inst("b")]), 0);
    s.tick(3001);
    assert.equal(s.selfPreservation, false, "2 of 2 silent but fewer than minHosts");
    assert.equal(dels(s.tick(64_000)).length, 2);
  });

  it("catalog - degraded: more than threshold of the hosts falling silent within the window pauses expiry, one effect on entry and exit", () => {
    const s = new CatalogState({ ...OPTS, selfPreservation: { threshold: 0.3, minHosts: 3, windowMs: 15_000 } });
    const agents = Array.from({ length: 10 }, (_, i) => new Agent(`h${i}`));
    agents.forEach((a, i) => s.handle(a.register([inst(`i${i}`)]), 0));
    const live = (t: number, from: number) => {
      for (let i = from; i < 10; i++) s.handle(agents[i]!.heartbeat(digestOf(s, `h${i}`)), t);
    };
    // h0-h3 stop at different phases of one heartbeat interval (as a partition does): 4 of 10 > 0.3.
    live(500, 0);
    for (let i = 0; i < 4; i++) s.handle(agents[i]!.heartbeat(digestOf(s, `h${i}`)), 600 + 200 * i);
    let entered: Extract<Effect, { type: "degraded" }>[] = [];
    for (let t = 1000; t <= 5000; t += 100) {
      if (t % 1000 === 0) live(t, 4);
      entered = entered.concat(degradedFx(s.tick(t)));
    }
    assert.equal(entered.length, 1);
    assert.equal(entered[0]!.on, true);
    assert.equal(entered[0]!.silent, 4);
    assert.equal(entered[0]!.hosts, 10);
    assert.deepEqual(s.degraded, { reason: "mass-silence", since: entered[0]!.at, silent: 4, hosts: 10, threshold: 0.3, windowMs: 15_000 });
    assert.equal(s.summary().degraded, s.degraded);
    for (let t = 6000; t < 200_000; t += 1000) {
      live(t, 4);
      const e = s.tick(t);
      assert.equal(dels(e).length, 0, "nothing expires while degraded");
      assert.equal(degradedFx(e).length, 0, "no repeated entry");
    }
    // h0 comes back: 3 of 10 still silent is not more than 0.3: the mode ends, the other three expire.
    s.handle(agents[0]!.heartbeat(digestOf(s, "h0")), 200_000);
    live(200_000, 4);
    const e = s.tick(200_001);
    assert.deepEqual(degradedFx(e).map((d) => [d.on, d.silent, d.hosts]), [[false, 3, 10]]);
    assert.equal(s.degraded, null);
    assert.deepEqual(dels(e).map((d) => d.id).sort(), ["i1", "i2", "i3"]);
  });

  it("catalog - degraded: the same hosts falling silent one by one, further apart than the window, expire normally", () => {
    const s = new CatalogState({ ...OPTS, selfPreservation: { threshold: 0.3, minHosts: 3, windowMs: 15_000 } });
    const agents = Array.from({ length: 10 }, (_, i) => new Agent(`h${i}`));
    agents.forEach((a, i) => s.handle(a.register([inst(`i${i}`)]), 0));
    const stopAt = [0, 20_000, 40_000, 60_000]; // h0..h3 die 20 s apart
    let deleted = 0;
    for (let t = 1000; t <= 150_000; t += 1000) {
      agents.forEach((a, i) => {
        if (i >= 4 || t < stopAt[i]!) s.handle(a.heartbeat(digestOf(s, `h${i}`)), t);
      });
      const e = s.tick(t);
      assert.equal(degradedFx(e).length, 0, "never degraded by attrition");
      deleted += dels(e).length;
    }
    assert.equal(deleted, 4);
  });

  it("catalog - grace (registry reconnect) ends the degraded mode", () => {
    const s = new CatalogState({ ...OPTS, selfPreservation: { threshold: 0.3, minHosts: 3 } });
    for (const h of ["h1", "h2", "h3"]) s.handle(new Agent(h).register([inst(`${h}-a`)]), 0);
    assert.equal(degradedFx(s.tick(3001))[0]?.on, true);
    assert.deepEqual(degradedFx(s.grace(10_000)).map((d) => d.on), [false]);
    assert.equal(s.selfPreservation, false);
  });

  it("catalog - a replayed old epoch cannot resurrect a host that shut down or expired", () => {
    const s = new CatalogState(OPTS);
    // Shut down: the host is forgotten, but its epoch is remembered.
    const old = new Agent("h1", 5);
    const oldReg = old.register([inst("a")]);
    s.handle(oldReg, 0);
    const newer = new Agent("h1", 6);
    s.handle(newer.register([inst("a")]), 10);
    s.handle(newer.deregister(["a"], "shutdown"), 20);
    assert.equal(s.summary().hosts, 0);
    assert.deepEqual(s.handle(oldReg, 30), [{ type: "reject", reason: "stale-epoch", hostId: "h1", kind: "register" }]);
    assert.deepEqual(rejects(s.handle(old.heartbeat("0000000000000000"), 30)), ["stale-epoch"], "no resync asked for a replay either");
    assert.equal(s.summary().instances, 0);
    assert.equal(s.counters.replayed, 2);
    // Expired: a replay of the same epoch's older messages is refused, a newer one is the host back.
    const b = new Agent("h2");
    const first = b.register([inst("b")]);
    s.handle(first, 0);
    s.tick(3001);
    s.tick(3002 + 60_000);
    assert.equal(s.record("orders", "b"), undefined);
    assert.deepEqual(rejects(s.handle(first, 70_000)), ["duplicate"]);
    assert.equal(s.record("orders", "b"), undefined);
    assert.equal(puts(s.handle(b.register([inst("b")]), 70_001)).length, 1, "the live agent's next message is accepted");
    // A restarted agent (new epoch) is always welcome.
    assert.equal(puts(s.handle(new Agent("h1", 7).register([inst("a")]), 70_002)).length, 1);
  });

  it("catalog - tombstones are forgotten after an hour", () => {
    const s = new CatalogState(OPTS);
    const old = new Agent("h1", 5);
    const oldReg = old.register([inst("a")]);
    s.handle(oldReg, 0);
    s.handle(new Agent("h1", 6).register([]), 10);
    s.handle({ ...new Agent("h1", 6).deregister(["a"], "shutdown"), seq: 2 }, 20);
    s.tick(3_700_000);
    assert.equal(puts(s.handle(oldReg, 3_700_001)).length, 1, "an hour later the id is free again");
  });

  it("catalog - deregister deletes only the host's own listed instances", () => {
    const s = new CatalogState(OPTS);
    const a = new Agent("h1");
    const b = new Agent("h2");
    s.handle(a.register([inst("a"), inst("a2")]), 0);
    s.handle(b.register([inst("b")]), 0);
    const e = s.handle(a.deregister(["a", "b", "nope"]), 10);
    assert.deepEqual(dels(e).map((d) => d.id), ["a"]);
    assert.ok(s.record("orders", "b"));
  });

  it("catalog - a shutdown deregister of everything forgets the host", () => {
    const s = new CatalogState(OPTS);
    const a = new Agent("h1");
    s.handle(a.register([inst("a")]), 0);
    s.handle(a.deregister(["a"], "shutdown"), 10);
    assert.equal(s.summary().hosts, 0);
    assert.deepEqual(s.tick(1_000_000), []);
  });

  it("catalog - a key registered by another live host is refused (conflict counted), the owner's record stands", () => {
    const s = new CatalogState(OPTS);
    s.handle(new Agent("h1").register([inst("a")]), 0);
    const e = s.handle(new Agent("h2").register([inst("a", { address: "10.6.6.6" })]), 10);
    assert.equal(puts(e).length, 0);
    assert.deepEqual(rejects(e), ["conflict"]);
    assert.equal(s.record("orders", "a")!.host, "h1");
    assert.equal(s.record("orders", "a")!.address, "10.0.0.1");
    assert.equal(s.counters.conflict, 1);
    assert.equal(s.host("h1")!.instances, 1);
  });

  it("catalog - loaded records rebuild hosts with a grace period and accept any seq of the same epoch", () => {
    const s = new CatalogState(OPTS);
    const rec: CatalogInstance = {
      id: "a", service: "orders", host: "h1", address: "10.0.0.1", port: 8080, tags: [], meta: {}, weight: 100,
      status: "critical", reason: "agent-lost", checks: [], epoch: 7, registeredAt: 1, updatedAt: 2,
    };
    assert.deepEqual(s.loaded([rec], 1_000_000), [{ type: "resync", hostId: "h1", reason: "registry-start" }]);
    assert.equal(s.summary().hosts, 1);
    assert.deepEqual(s.tick(1_000_000 + 15_000), [], "grace: 3 × assumed 5 s");
    const a = new Agent("h1", 7);
    a.seq = 3;
    const e = s.handle(a.register([inst("a")]), 1_000_100);
    assert.equal(puts(e)[0]!.record.status, "passing");
  });

  it("catalog - grace after the registry's own outage resets every host's silence window", () => {
    const s = new CatalogState(OPTS);
    const a = new Agent("h1");
    s.handle(a.register([inst("a")]), 0);
    s.tick(3001);
    const asked = s.grace(100_000);
    assert.deepEqual(resyncs(asked).map((e) => [e.hostId, e.reason]), [["h1", "registry-reconnect"]], "what agents sent meanwhile was lost: ask again");
    assert.equal(s.host("h1")!.lostAt, null);
    assert.deepEqual(s.tick(102_000), [], "no expiry right after the outage");
    assert.equal(puts(s.tick(103_001)).length, 0, "already agent-lost: no rewrite");
    assert.equal(s.host("h1")!.lostAt, 103_001);
    assert.equal(dels(s.tick(103_002 + 60_000)).length, 1, "a host that stays silent still expires later");
  });

  it("catalog - sameRecord ignores updatedAt and key order, not other fields", () => {
    const base: CatalogInstance = {
      id: "a", service: "s", host: "h", address: "x", port: 1, tags: ["t"], meta: { a: "1", b: "2" }, weight: 1,
      status: "passing", checks: [], epoch: 1, registeredAt: 1, updatedAt: 1,
    };
    assert.ok(sameRecord(base, { ...base, updatedAt: 99, meta: { b: "2", a: "1" } }));
    assert.ok(!sameRecord(base, { ...base, tags: ["u"] }));
    assert.ok(!sameRecord(base, { ...base, reason: "agent-lost" }));
  });
});
