// Instance ownership and the sanity bounds of the catalog reducer (docs/protocol.md "Ownership",
// "Sanity bounds"): unit tests with an injected clock, and a fast-check property over random
// interleavings of two hosts registering, heartbeating, deregistering, restarting and expiring.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { instanceDigest, type CatalogInstance, type InstanceRegistration, type RegisterMessage } from "roster-schemas";
import { CatalogState, type AgentInput, type Effect } from "../../src/core/catalog.js";

const HB = 1000;
const OPTS = {
  heartbeatTimeoutMultiplier: 3,
  deregisterAfterMs: 5000,
  // Two hosts: keep self-preservation out of the way (it has its own properties).
  selfPreservation: { threshold: 0.99, minHosts: 100 },
  assumedHeartbeatIntervalMs: HB,
};

function inst(id: string, address: string, over: Partial<InstanceRegistration> = {}): InstanceRegistration {
  return { id, service: "orders", address, port: 8080, tags: [], meta: {}, weight: 100, status: "passing", checks: [], ...over };
}

/** An agent as the registry sees it: its own truth (instances), epoch and seq. */
class Agent {
  seq = 0;
  instances: InstanceRegistration[] = [];
  constructor(readonly hostId: string, public epoch = 1, readonly address = `10.0.0.${hostId.length}`) {}
  env() {
    return { v: 1 as const, hostId: this.hostId, epoch: this.epoch, seq: ++this.seq, sentAt: 0 };
  }
  register(instances = this.instances, over: Partial<RegisterMessage> = {}): RegisterMessage {
    this.instances = instances;
    return { ...this.env(), kind: "register", heartbeatIntervalMs: HB, instances, ...over };
  }
  /** What the real agent sends: the digest of its OWN instances, whatever the registry accepted. */
  heartbeat(): AgentInput {
    return { ...this.env(), kind: "heartbeat", heartbeatIntervalMs: HB, instanceCount: this.instances.length, digest: instanceDigest(this.instances) };
  }
  health(id: string, status: "passing" | "critical"): AgentInput {
    this.instances = this.instances.map((i) => (i.id === id ? { ...i, status } : i));
    return { ...this.env(), kind: "health", service: "orders", instanceId: id, check: { id: "http-0", type: "http", status, since: 0 }, instanceStatus: status };
  }
  deregister(ids: string[], reason: "api" | "shutdown" = "api"): AgentInput {
    this.instances = this.instances.filter((i) => !ids.includes(i.id));
    return { ...this.env(), kind: "deregister", reason, instances: ids.map((instanceId) => ({ service: "orders", instanceId })) };
  }
  restart(epoch: number): void {
    this.epoch = epoch;
    this.seq = 0;
  }
}

const of = <T extends Effect["type"]>(e: Effect[], t: T) => e.filter((x): x is Extract<Effect, { type: T }> => x.type === t);

describe("catalog ownership", () => {
  it("ownership - the loser is told once and its heartbeats stay quiet (no resync ping-pong)", () => {
    const s = new CatalogState(OPTS);
    const a = new Agent("host-a", 1, "10.0.0.1");
    const b = new Agent("host-b", 1, "10.0.0.2");
    s.handle(a.register([inst("orders-1", a.address)]), 0);
    const e = s.handle(b.register([inst("orders-1", b.address), inst("orders-2", b.address)]), 10);
    assert.deepEqual(of(e, "conflict"), [{ type: "conflict", hostId: "host-b", instances: [{ service: "orders", id: "orders-1", owner: "host-a" }] }]);
    assert.deepEqual(of(e, "reject").map((r) => r.reason), ["conflict"]);
    assert.equal(of(e, "put").length, 1, "the rest of host-b's register applies");
    assert.equal(s.record("orders", "orders-1")!.host, "host-a");
    // A minute of both agents heartbeating their own truth: not one resync, not one write.
    for (let t = 1000; t <= 60_000; t += 1000) {
      for (const ag of [a, b]) assert.deepEqual(s.handle(ag.heartbeat(), t), [], `${ag.hostId} at ${t}`);
      assert.deepEqual(s.tick(t), []);
    }
    // A check flip of the refused claim: refused too, and the digest follows it (still no resync).
    assert.deepEqual(of(s.handle(b.health("orders-1", "critical"), 60_100), "resync"), []);
    assert.deepEqual(s.handle(b.heartbeat(), 61_000), []);
    assert.equal(s.record("orders", "orders-1")!.status, "passing");
    assert.equal(s.counters.conflict, 2);
  });

  it("ownership - moves when the owner deregisters, registers without it, or expires; the claimant is asked to resync", () => {
    for (const release of ["deregister", "restart-without", "expire"] as const) {
      const s = new CatalogState(OPTS);
      const a = new Agent("host-a", 1, "10.0.0.1");
      const b = new Agent("host-b", 1, "10.0.0.2");
      s.handle(a.register([inst("orders-1", a.address)]), 0);
      s.handle(b.register([inst("orders-1", b.address)]), 10);
      let e: Effect[] = [];
      if (release === "deregister") e = s.handle(a.deregister(["orders-1"]), 100);
      else if (release === "restart-without") {
        a.restart(2);
        e = s.handle(a.register([]), 100);
      } else {
        // host-a falls silent; host-b keeps beating; host-a is lost at 3 s and expires 5 s later.
        for (let t = 1000; t <= 10_000; t += 500) {
          s.handle(b.heartbeat(), t);
          e.push(...s.tick(t));
        }
      }
      assert.deepEqual(of(e, "resync").filter((r) => r.hostId === "host-b").map((r) => r.reason), ["ownership-free"], release);
      const taken = s.handle(b.register(), 20_000);
      assert.equal(of(taken, "put").length, 1, release);
      assert.equal(s.record("orders", "orders-1")!.host, "host-b", release);
      assert.equal(s.record("orders", "orders-1")!.address, "10.0.0.2", release);
      assert.deepEqual(of(taken, "conflict"), [], release);
    }
  });

  it("ownership - a lost (not yet expired) owner keeps its key; the owner's restart listing it keeps it too", () => {
    const s = new CatalogState(OPTS);
    const a = new Agent("host-a", 1, "10.0.0.1");
    const b = new Agent("host-b", 1, "10.0.0.2");
    s.handle(a.register([inst("orders-1", a.address)]), 0);
    s.handle(b.register([]), 0);
    for (let t = 500; t <= 4000; t += 500) {
      s.handle(b.heartbeat(), t);
      s.tick(t);
    }
    assert.equal(s.record("orders", "orders-1")!.reason, "agent-lost");
    assert.deepEqual(of(s.handle(b.register([inst("orders-1", b.address)]), 4100), "reject").map((r) => r.reason), ["conflict"]);
    assert.equal(s.record("orders", "orders-1")!.host, "host-a");
    a.restart(5000);
    s.handle(a.register(), 4200);
    assert.equal(s.record("orders", "orders-1")!.host, "host-a");
    assert.equal(s.record("orders", "orders-1")!.status, "passing");
  });

  it("ownership - a claim made after the host's digest was cached joins it (no resync on the next heartbeat)", () => {
    // Found by the property below: host-a's digest was cached while it held nothing, then its
    // register was refused for orders-1; the cache must not outlive the new claim.
    const s = new CatalogState(OPTS);
    const a = new Agent("host-a", 1, "10.0.0.1");
    const b = new Agent("host-b", 1, "10.0.0.2");
    s.handle(a.register([]), 0);
    assert.deepEqual(s.handle(a.heartbeat(), 100), []);
    s.handle(b.register([inst("orders-1", b.address)]), 200);
    s.handle(a.register([inst("orders-1", a.address)]), 300);
    assert.deepEqual(s.handle(a.heartbeat(), 400), []);
  });

  it("ownership - a claimant that deregisters the claim or shuts down is never handed the key", () => {
    const s = new CatalogState(OPTS);
    const a = new Agent("host-a", 1, "10.0.0.1");
    const b = new Agent("host-b", 1, "10.0.0.2");
    const c = new Agent("host-c", 1, "10.0.0.3");
    s.handle(a.register([inst("orders-1", a.address)]), 0);
    s.handle(b.register([inst("orders-1", b.address)]), 0);
    s.handle(c.register([inst("orders-1", c.address)]), 0);
    s.handle(b.deregister(["orders-1"]), 10);
    assert.deepEqual(s.handle(b.heartbeat(), 20), [], "host-b's digest no longer counts the claim");
    s.handle(c.deregister(["orders-1"], "shutdown"), 10);
    assert.equal(s.host("host-c"), undefined);
    const e = s.handle(a.deregister(["orders-1"]), 30);
    assert.deepEqual(of(e, "resync"), []);
  });
});

describe("catalog sanity bounds and reset", () => {
  it("bounds - an epoch beyond the skew is refused (future-epoch), within it accepted", () => {
    const now = 1_700_000_000_000;
    const s = new CatalogState({ ...OPTS, maxEpochSkewMs: 60_000 });
    const forged = new Agent("host-a", Number.MAX_SAFE_INTEGER);
    const e = s.handle(forged.register([inst("x", "10.6.6.6")]), now);
    assert.deepEqual(of(e, "reject").map((r) => r.reason), ["future-epoch"]);
    assert.equal(s.host("host-a"), undefined);
    assert.equal(s.counters.futureEpoch, 1);
    const real = new Agent("host-a", now + 59_000);
    assert.equal(of(s.handle(real.register([inst("x", "10.0.0.1")]), now), "put").length, 1);
  });

  it("bounds - a heartbeat interval above maxHeartbeatIntervalMs is refused (bad-interval)", () => {
    const s = new CatalogState({ ...OPTS, maxHeartbeatIntervalMs: 10_000 });
    const a = new Agent("host-a");
    assert.deepEqual(of(s.handle(a.register([inst("x", "10.0.0.1")], { heartbeatIntervalMs: 3_600_000 }), 0), "reject").map((r) => r.reason), ["bad-interval"]);
    assert.equal(s.host("host-a"), undefined);
    s.handle(a.register([inst("x", "10.0.0.1")], { heartbeatIntervalMs: 10_000 }), 0);
    const hb = { ...(a.heartbeat() as Extract<AgentInput, { kind: "heartbeat" }>), heartbeatIntervalMs: 10_001 };
    assert.deepEqual(of(s.handle(hb, 1), "reject").map((r) => r.reason), ["bad-interval"]);
    assert.equal(s.counters.badInterval, 2);
  });

  it("reset - clears a forged epoch/seq gate so the real agent's next register replaces the forged one", () => {
    const now = 1_700_000_000_000;
    const s = new CatalogState({ ...OPTS, maxEpochSkewMs: 300_000 });
    const real = new Agent("host-a", now - 10_000, "10.0.0.1");
    s.handle(real.register([inst("orders-1", real.address)]), now);
    // A forged register, epoch just inside the skew, with many seqs ahead.
    const forged = new Agent("host-a", now + 299_000, "10.6.6.6");
    forged.seq = 1e9;
    s.handle(forged.register([inst("orders-1", forged.address)]), now + 1);
    assert.equal(s.record("orders", "orders-1")!.address, "10.6.6.6");
    assert.deepEqual(of(s.handle(real.register(), now + 2), "reject").map((r) => r.reason), ["stale-epoch"]);
    const r = s.reset("host-a", now + 3);
    assert.equal(r.known, true);
    assert.deepEqual(of(r.effects, "resync").map((x) => x.reason), ["operator-reset"]);
    assert.equal(s.host("host-a")!.heartbeatIntervalMs, HB);
    s.handle(real.register(), now + 4);
    assert.equal(s.record("orders", "orders-1")!.address, "10.0.0.1");
    assert.equal(s.reset("nobody", now).known, false);
  });
});

// ---------------------------------------------------------------------------------------------
// Property: random interleavings of two hosts over the same two ids.

type Step =
  | { t: "register"; host: number; ids: number[] }
  | { t: "restart"; host: number; ids: number[] }
  | { t: "heartbeat"; host: number }
  | { t: "deregister"; host: number; id: number; shutdown: boolean }
  | { t: "expire"; host: number }
  | { t: "tick"; ms: number };

const IDS = ["orders-1", "orders-2"];
const HOSTS = ["host-a", "host-b"];
const ids = fc.uniqueArray(fc.nat(IDS.length - 1), { maxLength: 2 });
const host = fc.nat(1);
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ t: fc.constant("register" as const), host, ids }),
  fc.record({ t: fc.constant("restart" as const), host, ids }),
  { weight: 3, arbitrary: fc.record({ t: fc.constant("heartbeat" as const), host }) },
  fc.record({ t: fc.constant("deregister" as const), host, id: fc.nat(IDS.length - 1), shutdown: fc.boolean() }),
  fc.record({ t: fc.constant("expire" as const), host }),
  fc.record({ t: fc.constant("tick" as const), ms: fc.integer({ min: 1, max: 2000 }) }),
);

class TwoHosts {
  readonly s = new CatalogState(OPTS);
  readonly store = new Map<string, CatalogInstance>();
  readonly agents = HOSTS.map((h, i) => new Agent(h, 1, `10.0.0.${i + 1}`));
  /** A stopped agent sends nothing and answers no resync until it restarts. */
  readonly up = [true, true];
  now = 1000;
  epochs = 1;
  quietResyncs = 0;

  private apply(effects: Effect[]): void {
    const resync: string[] = [];
    for (const e of effects) {
      if (e.type === "put") this.store.set(`${e.record.service}.${e.record.id}`, e.record);
      else if (e.type === "delete") this.store.delete(`${e.service}.${e.id}`);
      else if (e.type === "resync") resync.push(e.hostId);
      else if (e.type === "conflict") for (const c of e.instances) assert.ok(this.s.host(c.owner), `conflict names a known owner ${c.owner}`);
    }
    // Agents answer a resync with their full state, as the real ones do.
    for (const h of resync) {
      const i = HOSTS.indexOf(h);
      if (i >= 0 && this.up[i]) this.send(i, this.agents[i]!.register());
    }
  }

  private send(i: number, msg: AgentInput): void {
    const before = this.s.host(HOSTS[i]!);
    const effects = this.s.handle(msg, this.now);
    // The claim: an agent heartbeating its own truth, while the registry holds it alive, is never
    // asked to resync — not even when another host owns one of its ids (no ping-pong).
    if (msg.kind === "heartbeat" && before && before.lostAt === null) this.quietResyncs += of(effects, "resync").length;
    this.apply(effects);
  }

  private tick(ms: number): void {
    this.now += ms;
    this.apply(this.s.tick(this.now));
  }

  owners(): Map<string, string> {
    return new Map(this.s.records().map((r) => [r.id, r.host]));
  }

  run(step: Step): void {
    const ag = step.t === "tick" ? null : this.agents[step.host]!;
    const i = step.t === "tick" ? -1 : step.host;
    const toInst = (xs: number[]) => xs.map((x) => inst(IDS[x]!, ag!.address));
    switch (step.t) {
      case "tick":
        return this.tick(step.ms);
      case "register":
        if (this.up[i]) this.send(i, ag!.register(toInst(step.ids)));
        return;
      case "restart":
        this.up[i] = true;
        ag!.restart(++this.epochs);
        this.send(i, ag!.register(toInst(step.ids)));
        return;
      case "heartbeat":
        if (this.up[i]) this.send(i, ag!.heartbeat());
        return;
      case "deregister":
        if (!this.up[i]) return;
        this.send(i, ag!.deregister([IDS[step.id]!], step.shutdown ? "shutdown" : "api"));
        if (step.shutdown) {
          // A shutdown deregisters everything the agent holds and stops it.
          if (ag!.instances.length) this.send(i, ag!.deregister(ag!.instances.map((x) => x.id), "shutdown"));
          this.up[i] = false;
        }
        return;
      case "expire": {
        // The agent dies; the other keeps beating until the dead one is forgotten.
        this.up[i] = false;
        for (let t = 0; t < 10_000; t += 500) {
          for (const j of [0, 1]) if (this.up[j]) this.send(j, this.agents[j]!.heartbeat());
          this.tick(500);
        }
        return;
      }
    }
  }
}

describe("catalog ownership properties", () => {
  it("ownership - over any interleaving of two hosts: one owner per id, moved only by a release, no resync storm, convergence", () => {
    let conflicts = 0;
    let moves = 0;
    fc.assert(
      fc.property(fc.array(stepArb, { maxLength: 40 }), (steps) => {
        const w = new TwoHosts();
        for (const step of steps) {
          const before = w.owners();
          w.run(step);
          const after = w.owners();
          // The store the effects build is the reducer's own view, and every record names its owner.
          assert.deepEqual(new Map([...w.store].map(([k, r]) => [k, r.host])), new Map(w.s.records().map((r) => [`${r.service}.${r.id}`, r.host])));
          for (const [id, was] of before) {
            const now = after.get(id);
            if (now === undefined || now === was) continue;
            moves++;
            // Moved from `was` to `now`: `was` must have let go (no longer lists it, or was forgotten).
            const k = HOSTS.indexOf(was);
            const released = !w.agents[k]!.instances.some((x) => x.id === id) || w.s.host(was) === undefined;
            assert.ok(released, `${id} moved from ${was} to ${now} without a release (step ${JSON.stringify(step)})`);
          }
        }
        conflicts += w.s.counters.conflict;
        assert.equal(w.quietResyncs, 0, "an honest heartbeat of a live host asked for a resync");
        // Quiet phase: live agents beat, dead ones expire. Every id a live agent holds is then in
        // the catalog, owned by a live agent that holds it; nothing else remains.
        for (let t = 0; t < 12_000; t += 500) {
          for (const j of [0, 1]) if (w.up[j]) w.run({ t: "heartbeat", host: j });
          w.run({ t: "tick", ms: 500 });
        }
        for (const id of IDS) {
          const holders = HOSTS.filter((_, j) => w.up[j] && w.agents[j]!.instances.some((x) => x.id === id));
          const owner = w.owners().get(id);
          if (holders.length === 0) assert.equal(owner, undefined, `${id} outlived every holder`);
          else assert.ok(owner !== undefined && holders.includes(owner), `${id} owned by ${owner}, held by ${holders.join(",")}`);
        }
      }),
      { numRuns: 1000 },
    );
    assert.ok(conflicts > 0, "the generator reaches conflicts");
    assert.ok(moves > 0, "the generator reaches ownership moves");
  });
});
