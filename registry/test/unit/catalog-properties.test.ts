// Properties of the registry's pure catalog reducer over random sequences of agent traffic and
// clock ticks (fast-check): the effects it emits, applied to a store, always equal its own view;
// nothing it accepts makes it throw; a host's matching heartbeat never writes.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  AgentMessage,
  CatalogInstance,
  type InstanceRegistration,
} from "@roster/schemas";
import { CatalogState, type AgentInput, type Effect } from "../../src/core/catalog.js";

const OPTS = {
  heartbeatTimeoutMultiplier: 3,
  deregisterAfterMs: 5_000,
  selfPreservation: { threshold: 0.5, minHosts: 3 },
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

class World {
  readonly state = new CatalogState(OPTS);
  /** The store the adapters would keep: effects applied in order. */
  readonly store = new Map<string, CatalogInstance>();
  now = 1_000_000;
  private readonly epochs = HOSTS.map(() => 1);
  private readonly seqs = HOSTS.map(() => 0);
  writesOnHonestHeartbeat = 0;

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
      this.apply(this.state.tick(this.now));
      return;
    }
    const msg = this.message(s);
    // The generator only builds messages the wire contract accepts.
    assert.ok(AgentMessage.safeParse(msg).success);
    const effects = this.state.handle(msg, this.now);
    if (s.t === "heartbeat" && s.honest) {
      this.writesOnHonestHeartbeat += effects.filter((e) => e.type !== "resync").length;
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

  it("catalog - a heartbeat whose digest matches the registry's view never writes", () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        const w = new World();
        for (const s of steps) w.run(s);
        assert.equal(w.writesOnHonestHeartbeat, 0);
      }),
      { numRuns: 300 },
    );
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
