// Properties of the registry's pure catalog reducer over random sequences of agent traffic and
// clock ticks (fast-check): the effects it emits, applied to a store, always equal its own view;
// nothing it accepts makes it throw; a host's matching heartbeat never writes; a replayed message
// never changes the catalog; nothing expires while degraded.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  AgentMessage,
  CatalogInstance,
  type InstanceRegistration,
} from "roster-schemas";
import { CatalogState, type AgentInput, type Effect } from "../../src/core/catalog.js";

const OPTS = {
  heartbeatTimeoutMultiplier: 3,
  deregisterAfterMs: 5_000,
  // Low enough that random silences trip the degraded mode often (the properties below check it does).
  selfPreservation: { threshold: 0.3, minHosts: 2, windowMs: 15_000 },
  assumedHeartbeatIntervalMs: 1000,
};
const HB = 1000;
const HOSTS = ["h1", "h2", "h3", "h4"];
const IDS = ["a", "b", "c"];
const SERVICES = ["orders", "payments"];
const STATUSES = ["passing", "warning", "critical", "draining"] as const;
const CHECK_STATUSES = ["passing", "warning", "critical"] as const;

/** One step of the world: an agent message (before seq/epoch are filled in) or time passing. */
type Step =
  | { t: "register"; host: number; restart: boolean; instances: Array<{ id: number; service: number; status: number; port: number }> }
  | { t: "heartbeat"; host: number; honest: boolean }
  | { t: "health"; host: number; id: number; service: number; status: number }
  | { t: "deregister"; host: number; id: number; service: number; shutdown: boolean }
  | { t: "tick"; ms: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    t: fc.constant("register" as const),
    host: fc.nat(HOSTS.length - 1),
    restart: fc.boolean(),
    instances: fc.uniqueArray(
      fc.record({ id: fc.nat(IDS.length - 1), service: fc.nat(SERVICES.length - 1), status: fc.nat(3), port: fc.integer({ min: 8000, max: 8002 }) }),
      { maxLength: 4, selector: (i) => `${i.service}.${i.id}` },
    ),
  }),
  fc.record({ t: fc.constant("heartbeat" as const), host: fc.nat(HOSTS.length - 1), honest: fc.boolean() }),
  fc.record({ t: fc.constant("health" as const), host: fc.nat(HOSTS.length - 1), id: fc.nat(IDS.length - 1), service: fc.nat(SERVICES.length - 1), status: fc.nat(2) }),
  fc.record({ t: fc.constant("deregister" as const), host: fc.nat(HOSTS.length - 1), id: fc.nat(IDS.length - 1), service: fc.nat(SERVICES.length - 1), shutdown: fc.boolean() }),
  fc.record({ t: fc.constant("tick" as const), ms: fc.integer({ min: 1, max: 4000 }) }),
);

const longTick: fc.Arbitrary<Step> = fc.record({ t: fc.constant("tick" as const), ms: fc.integer({ min: 4000, max: 12_000 }) });

const stepWithSilences = fc.oneof({ arbitrary: step, weight: 4 }, { arbitrary: longTick, weight: 1 });

class World {
  readonly state = new CatalogState(OPTS);
  /** The store the adapters would keep: effects applied in order. */
  readonly store = new Map<string, CatalogInstance>();
  now = 1_000_000;
  private readonly epochs = HOSTS.map(() => 1);
  private readonly seqs = HOSTS.map(() => 0);
  writesOnHonestHeartbeat = 0;
  /** Writes an honest heartbeat of a lost host made that are not a revival (an agent-lost record put back without its reason). */
  notRevivals = 0;
  revivals = 0;
  /** Every message sent so far, for replays. */
  readonly sent: AgentInput[] = [];
  /** Degraded on/off transitions seen, in order. */
  readonly transitions: boolean[] = [];
  deletesWhileDegraded = 0;

  apply(effects: Effect[]): void {
    for (const e of effects) {
      if (e.type === "put") {
        // Every record the reducer writes is a valid catalog record.
        assert.ok(CatalogInstance.safeParse(e.record).success, JSON.stringify(e.record));
        this.store.set(`${e.record.service}.${e.record.id}`, e.record);
      } else if (e.type === "delete") {
        this.store.delete(`${e.service}.${e.id}`);
      }
    }
  }

  private envelope(host: number) {
    return { v: 1 as const, hostId: HOSTS[host]!, epoch: this.epochs[host]!, seq: ++this.seqs[host]!, sentAt: this.now };
  }

  message(s: Exclude<Step, { t: "tick" }>): AgentInput {
    if (s.t === "register") {
      if (s.restart) {
        this.epochs[s.host]!++;
        this.seqs[s.host] = 0;
      }
      const instances: InstanceRegistration[] = s.instances.map((i) => ({
        id: IDS[i.id]!,
        service: SERVICES[i.service]!,
        address: "10.0.0.1",
        port: i.port,
        tags: [],
        meta: {},
        weight: 100,
        status: STATUSES[i.status]!,
        checks: [],
      }));
      return { ...this.envelope(s.host), kind: "register", heartbeatIntervalMs: HB, instances };
    }
    if (s.t === "heartbeat") {
      const env = this.envelope(s.host);
      const digest = s.honest ? this.state.digestOf(HOSTS[s.host]!) : "0000000000000000";
      return { ...env, kind: "heartbeat", heartbeatIntervalMs: HB, instanceCount: 0, digest };
    }
    if (s.t === "health") {
      const status = CHECK_STATUSES[s.status]!;
      return {
        ...this.envelope(s.host),
        kind: "health",
        service: SERVICES[s.service]!,
        instanceId: IDS[s.id]!,
        check: { id: "http-0", type: "http", status, since: this.now },
        instanceStatus: status,
      };
    }
    return {
      ...this.envelope(s.host),
      kind: "deregister",
      reason: s.shutdown ? "shutdown" : "api",
      instances: [{ service: SERVICES[s.service]!, instanceId: IDS[s.id]! }],
    };
  }

  run(s: Step): void {
    if (s.t === "tick") {
      this.now += s.ms;
      const effects = this.state.tick(this.now);
      for (const e of effects) if (e.type === "degraded") this.transitions.push(e.on);
      if (this.state.degraded) this.deletesWhileDegraded += effects.filter((e) => e.type === "delete").length;
      this.apply(effects);
      return;
    }
    const msg = this.message(s);
    this.sent.push(msg);
    // The generator only builds messages the wire contract accepts.
    assert.ok(AgentMessage.safeParse(msg).success);
    const lost = s.t === "heartbeat" && this.state.host(HOSTS[s.host]!)?.lostAt != null;
    const effects = this.state.handle(msg, this.now);
    if (s.t === "heartbeat" && s.honest) {
      const writes = effects.filter((e) => e.type !== "resync");
      if (!lost) this.writesOnHonestHeartbeat += writes.length;
      else {
        // A lost host whose beat carries its digest from before the silence is revived: its
        // agent-lost records come back as they were, and that is the only write allowed.
        for (const e of writes) {
          const before = e.type === "put" ? this.store.get(`${e.record.service}.${e.record.id}`) : undefined;
          if (e.type === "put" && before?.reason === "agent-lost" && e.record.reason === undefined && e.record.host === before.host) this.revivals++;
          else this.notRevivals++;
        }
      }
    }
    this.apply(effects);
  }
}

function sortByKey(records: CatalogInstance[]): CatalogInstance[] {
  return [...records].sort((a, b) => `${a.service}.${a.id}`.localeCompare(`${b.service}.${b.id}`));
}

describe("catalog core properties", () => {
  it("catalog - the emitted effects, applied in order, always equal the reducer's own view", () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        const w = new World();
        for (const s of steps) {
          w.run(s);
          assert.deepEqual(sortByKey([...w.store.values()]), sortByKey(w.state.records()));
        }
      }),
      { numRuns: 300 },
    );
  });

  it("catalog - a heartbeat whose digest matches the registry's view never writes (a lost host's only revives its agent-lost records)", () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        const w = new World();
        for (const s of steps) w.run(s);
        assert.equal(w.writesOnHonestHeartbeat, 0);
        assert.equal(w.notRevivals, 0);
      }),
      { numRuns: 300 },
    );
  });

  it("catalog - a replayed message (duplicate, out-of-order, old epoch, forgotten host) never changes the catalog", () => {
    let rejected = 0;
    let forgottenReplays = 0;
    fc.assert(
      // Long silences too, so hosts expire and are forgotten (the tombstone case).
      fc.property(fc.array(stepWithSilences, { maxLength: 60 }), fc.array(fc.tuple(fc.nat(59), fc.nat(59)), { maxLength: 10 }), fc.nat(), (steps, replays, seed) => {
        const w = new World();
        const replay = (old: AgentInput) => {
          const before = sortByKey(w.state.records());
          if (old.kind === "register" && old.instances.length > 0 && !w.state.hostIds().includes(old.hostId)) forgottenReplays++;
          const effects = w.state.handle(old, w.now);
          assert.deepEqual(effects.filter((e) => e.type === "put" || e.type === "delete"), [], `replay of ${JSON.stringify(old)}`);
          assert.deepEqual(sortByKey(w.state.records()), before);
          rejected += effects.filter((e) => e.type === "reject").length;
        };
        steps.forEach((s, i) => {
          w.run(s);
          for (const [at, which] of replays) if (at === i && w.sent.length > 0) replay(w.sent[which % w.sent.length]!);
        });
        // Then the whole history again, in a shuffled order.
        const all = [...w.sent];
        for (let i = all.length - 1, x = seed; i > 0; i--, x = (x * 1103515245 + 12345) >>> 0) {
          const j = x % (i + 1);
          [all[i], all[j]] = [all[j]!, all[i]!];
        }
        for (const m of all) replay(m);
      }),
      { numRuns: 300 },
    );
    assert.ok(rejected > 0, "replays were actually rejected");
    assert.ok(forgottenReplays > 0, "some replayed registers targeted a forgotten host");
  });

  it("catalog - nothing expires while degraded; entry and exit alternate and match the state", () => {
    let entered = 0;
    fc.assert(
      fc.property(fc.array(stepWithSilences, { maxLength: 80 }), (steps) => {
        const w = new World();
        for (const s of steps) w.run(s);
        assert.equal(w.deletesWhileDegraded, 0);
        w.transitions.forEach((on, i) => assert.equal(on, i % 2 === 0, "on, off, on, ..."));
        assert.equal(w.state.selfPreservation, w.transitions.length % 2 === 1);
        assert.equal(w.state.degraded !== null, w.state.selfPreservation);
        entered += w.transitions.filter((on) => on).length;
      }),
      { numRuns: 300 },
    );
    assert.ok(entered > 0, "the generator reaches the degraded mode");
  });

  it("catalog - a store rebuilt from the records (registry restart) then fed the same future agrees again", () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 30 }), fc.array(step, { maxLength: 30 }), (past, future) => {
        const w = new World();
        for (const s of past) w.run(s);
        // Restart: a new reducer loaded from the store, as the registry does from KV.
        const restarted = new CatalogState(OPTS);
        restarted.loaded([...w.store.values()], w.now);
        assert.deepEqual(sortByKey(restarted.records()), sortByKey(w.state.records()));
        const store = new Map(w.store);
        let now = w.now;
        for (const s of future) {
          if (s.t === "tick") {
            now += s.ms;
            for (const e of restarted.tick(now)) {
              if (e.type === "put") store.set(`${e.record.service}.${e.record.id}`, e.record);
              else if (e.type === "delete") store.delete(`${e.service}.${e.id}`);
            }
          }
        }
        assert.deepEqual(sortByKey([...store.values()]), sortByKey(restarted.records()));
      }),
      { numRuns: 200 },
    );
  });
});
