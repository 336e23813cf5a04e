// Property-based hostile input against the real registry (in-process, real nats-server): every NATS
// subject it listens on (agent messages, snapshot requests) and every HTTP route. For each batch:
// the process stays up, the catalog is unchanged (memory, revision and the HTTP view), and every
// message that reached the registry is counted as a drop, by reason. The fixed malformed cases live
// in hostile.test.ts; here fast-check generates them.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connect, createInbox, type NatsConnection } from "@nats-io/transport-node";
import fc from "fast-check";
import {
  AGENT_MESSAGE_KINDS,
  AGENT_WILDCARD,
  DeregisterMessage,
  HealthMessage,
  HeartbeatMessage,
  LIMITS,
  NAME_PATTERN,
  RegisterMessage,
  SNAPSHOT_WILDCARD,
  Snapshot,
  agentSubject,
  decode,
  encode,
  instanceDigest,
  type InstanceRegistration,
} from "roster-schemas";
import { NatsServer, waitFor } from "roster-testkit";
import type { Registry } from "../../src/app.js";
import { inst, startRegistry } from "./helpers.js";

const te = new TextEncoder();
const GOOD = "good-host";
const EPOCH = 1_000_000;

/** Strings that must never become a name: subject tokens, whitespace, unicode edge cases. */
const HOSTILE_NAMES = [
  "a.b", "*", ">", "a b", " ", "", "\u0000", "nul\u0000byte", "\u202eevil", "rtl\u200fname", "😀", "emoji😀host",
  "\ud800", "lone\udc00surrogate", "-dash-first", "_under", "x".repeat(64), "tab\there", "line\nbreak", "a>b", "a*b", "%2e",
];
const hostileName = fc.oneof(fc.constantFrom(...HOSTILE_NAMES), fc.string({ unit: "binary", maxLength: 80 }).filter((s) => !NAME_PATTERN.test(s)));
/** Tokens for the host and kind positions of an agent subject (some are valid, most are not). */
const token = fc.oneof(fc.constantFrom(GOOD, "other-host", ...AGENT_MESSAGE_KINDS, ...HOSTILE_NAMES), fc.string({ unit: "grapheme", maxLength: 20 }));

/** Mostly real agent subjects (so payloads reach decoding), sometimes hostile ones. */
const subjectTokens = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(fc.constantFrom(GOOD, "other-host"), fc.constantFrom(...AGENT_MESSAGE_KINDS)) },
  { weight: 1, arbitrary: fc.tuple(token, token) },
);

const baseInstances: InstanceRegistration[] = [inst("g1"), inst("g2", { service: "payments", port: 8081 })];

/** The good host's messages are built here so old ones can be replayed. */
class Good {
  seq = 0;
  /** Last seq per stream: the registry orders heartbeats apart from transitions (docs/protocol.md). */
  last = { register: 0, heartbeat: 0 };
  env(kind: "register" | "heartbeat") {
    this.last[kind] = ++this.seq;
    return { v: 1 as const, hostId: GOOD, epoch: EPOCH, seq: this.seq, sentAt: Date.now() };
  }
  register(): Uint8Array {
    // 60 s heartbeat (the registry's maxHeartbeatInterval): the good host never goes silent during the test.
    return encode(RegisterMessage, { ...this.env("register"), kind: "register", heartbeatIntervalMs: 60_000, instances: baseInstances });
  }
  heartbeat(): Uint8Array {
    const digest = instanceDigest(baseInstances);
    return encode(HeartbeatMessage, { ...this.env("heartbeat"), kind: "heartbeat", heartbeatIntervalMs: 60_000, instanceCount: baseInstances.length, digest });
  }
}

/** A valid register of the good host with one field made hostile: always invalid. */
const mutatedRegister = fc
  .tuple(
    fc.constantFrom("hostId", "service", "id", "zone", "address", "port", "epoch", "seq", "v", "kind", "instances", "tags", "meta", "weight", "status"),
    fc.oneof(hostileName, fc.constantFrom(-1, 1.5, 1e308, Number.MAX_SAFE_INTEGER + 2, null, true, [], {}, "1", "NaN")),
  )
  .map(([field, bad]) => {
    const i: Record<string, unknown> = { ...inst("x") };
    const m: Record<string, unknown> = { v: 1, kind: "register", hostId: GOOD, epoch: EPOCH, seq: 1e9, sentAt: 0, heartbeatIntervalMs: 1000, instances: [i] };
    if (["service", "id", "zone", "address", "port", "tags", "meta", "weight", "status"].includes(field)) {
      // A value that is valid for this field would not be hostile: use one that is not.
      i[field] = field === "address" && typeof bad === "string" && bad !== "" && !/\s/.test(bad) ? `${bad} ` : bad;
      if (field === "weight" && typeof bad === "number" && Number.isInteger(bad) && bad >= 1 && bad <= 10_000) i[field] = 0;
      if (field === "port" && typeof bad === "number" && Number.isInteger(bad) && bad >= 1 && bad <= 65535) i[field] = 0;
    } else {
      m[field] = bad;
    }
    return JSON.stringify(m);
  })
  // Some "bad" values are valid for some fields (`tags: []`): keep only what the contract refuses.
  .filter((json) => !RegisterMessage.safeParse(JSON.parse(json)).success)
  .map((json) => te.encode(json));

/** Payloads no agent subject accepts. */
const garbage = fc.oneof(
  fc.uint8Array({ maxLength: 512 }),
  fc.jsonValue({ maxDepth: 4 }).map((v) => te.encode(JSON.stringify(v) ?? "null")),
  fc.integer({ min: 1_000, max: 100_000 }).map((d) => te.encode("[".repeat(d) + "]".repeat(d))), // deep nesting
  fc.integer({ min: 1_000, max: 100_000 }).map((d) => te.encode('{"a":'.repeat(d) + "1" + "}".repeat(d))),
  fc.integer({ min: LIMITS.maxMessageBytes + 1, max: 900_000 }).map((n) => te.encode(JSON.stringify("x".repeat(n)))), // past our limit, under NATS'
  mutatedRegister,
);

type Status = { revision: number; instances: number; snapshotsServed: number; drops: { total: number; byReason: Record<string, number>; byKind: Record<string, number> } };

describe("registry hostile input, property-based (real nats-server)", () => {
  let nats: NatsServer;
  let reg: Registry;
  let nc: NatsConnection;
  let observer: NatsConnection;
  const good = new Good();
  const sentGood: Array<{ seq: number; bytes: Uint8Array; kind: "register" | "heartbeat" }> = [];
  let seenAgent = 0;
  let seenSnapshot = 0;

  const view = async () => {
    const records = reg.memory.all().sort((a, b) => `${a.service}.${a.id}`.localeCompare(`${b.service}.${b.id}`));
    const http = await reg.http.inject({ method: "GET", url: "/v1/services/orders/instances" });
    return { revision: reg.memory.revision, records: JSON.stringify(records), http: http.body };
  };
  const status = () => reg.status() as unknown as Status;

  /** Waits until the registry has handled everything the observer saw, then returns the status. */
  async function settle(expect: (s: Status) => boolean, what: string): Promise<Status> {
    await nc.flush();
    return waitFor(() => (expect(status()) ? status() : null), { timeoutMs: 10_000, what });
  }

  before(async () => {
    nats = await NatsServer.start();
    reg = await startRegistry(nats.url);
    nc = await connect({ servers: nats.url });
    observer = await connect({ servers: nats.url });
    observer.subscribe(AGENT_WILDCARD, { callback: () => void seenAgent++ });
    observer.subscribe(SNAPSHOT_WILDCARD, { callback: () => void seenSnapshot++ });
    await observer.flush();
    // Two of each kind, so a replay can be either the newest of its kind (duplicate) or older (out of order).
    for (const kind of ["register", "heartbeat", "register", "heartbeat"] as const) {
      const bytes = kind === "register" ? good.register() : good.heartbeat();
      sentGood.push({ seq: good.seq, bytes, kind });
      nc.publish(agentSubject(GOOD, kind), bytes);
    }
    await waitFor(() => reg.memory.instanceCount === 2, { what: "baseline instances" });
    await settle((s) => s.drops.total === 0, "baseline");
  });

  after(async () => {
    await observer?.close().catch(() => undefined);
    await nc?.close().catch(() => undefined);
    await reg?.close();
    await nats?.close();
  });

  it("hostile - random subjects and payloads on the agent subjects: every delivered message is a counted drop, nothing changes", async () => {
    const seenReasons = new Set<string>();
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(subjectTokens, garbage), { minLength: 1, maxLength: 8 }), async (batch) => {
        const before = await view();
        const st0 = status();
        const seen0 = seenAgent;
        for (const [[host, kind], payload] of batch) {
          try {
            nc.publish(`roster.v1.agent.${host}.${kind}`, payload);
          } catch (err) {
            // Whitespace or an empty subject: the client refuses to publish it (nothing is sent).
            assert.match(String(err), /illegal subject|subject/i);
          }
        }
        await nc.flush();
        await observer.flush();
        const delivered = seenAgent - seen0;
        const st = await settle((s) => s.drops.total - st0.drops.total >= delivered, `${delivered} drops`);
        assert.equal(st.drops.total - st0.drops.total, delivered, "every delivered message counted once");
        const reasons = Object.keys(st.drops.byReason).filter((r) => st.drops.byReason[r] !== st0.drops.byReason[r]);
        for (const r of reasons) {
          assert.ok(["bad-subject", "not-json", "invalid", "too-large", "host-mismatch"].includes(r), r);
          seenReasons.add(r);
        }
        assert.deepEqual(await view(), before, "catalog unchanged");
      }),
      { numRuns: 40 },
    );
    // The generators reach every decoding stage (a test that cannot fail is a defect).
    assert.deepEqual([...seenReasons].filter((r) => r !== "host-mismatch").sort(), ["bad-subject", "invalid", "not-json", "too-large"]);
    assert.equal((await reg.http.inject({ method: "GET", url: "/healthz" })).statusCode, 200);
  });

  it("hostile - replays, out-of-order and stale epochs of a real host, and unknown hosts: each a counted rejection by reason", async () => {
    type Case = { bytes: Uint8Array; subject: string; reason: string };
    const seenReasons = new Set<string>();
    const ghost = fc.integer({ min: 0, max: 1_000_000 }).map((n) => `ghost-${n}`);
    const oneCase: fc.Arbitrary<(last: Good["last"]) => Case> = fc.oneof(
      // A replay of a message the host really sent: heartbeats and transitions are ordered apart, so
      // the newest of its kind is a duplicate and an older one out of order (a register older than
      // the last heartbeat but not than the last transition is still a duplicate).
      fc.nat().map((i) => (last: Good["last"]) => {
        const m = sentGood[i % sentGood.length]!;
        return { bytes: m.bytes, subject: agentSubject(GOOD, m.kind), reason: m.seq === last[m.kind] ? "duplicate" : "out-of-order" };
      }),
      // A message from an older boot epoch of the host, with any seq.
      fc.tuple(fc.integer({ min: 0, max: EPOCH - 1 }), fc.nat()).map(([epoch, seq]) => () => ({
        bytes: encode(RegisterMessage, { v: 1, kind: "register", hostId: GOOD, epoch, seq, sentAt: 0, heartbeatIntervalMs: 1000, instances: [] }),
        subject: agentSubject(GOOD, "register"),
        reason: "stale-epoch",
      })),
      // Health and deregister from a host the registry never heard of.
      fc.tuple(ghost, fc.boolean()).map(([hostId, health]) => () => ({
        bytes: health
          ? encode(HealthMessage, { v: 1, kind: "health", hostId, epoch: 1, seq: 1, sentAt: 0, service: "orders", instanceId: "g1", check: { id: "c", type: "ttl", status: "critical", since: 0 }, instanceStatus: "critical" })
          : encode(DeregisterMessage, { v: 1, kind: "deregister", hostId, epoch: 1, seq: 1, sentAt: 0, reason: "api", instances: [{ service: "orders", instanceId: "g1" }] }),
        subject: agentSubject(hostId, health ? "health" : "deregister"),
        reason: "unknown-host",
      })),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(oneCase, { minLength: 1, maxLength: 10 }), async (cases) => {
        const before = await view();
        const st0 = status();
        const want: Record<string, number> = {};
        for (const make of cases) {
          const c = make(good.last);
          want[c.reason] = (want[c.reason] ?? 0) + 1;
          nc.publish(c.subject, c.bytes);
        }
        const st = await settle((s) => s.drops.total - st0.drops.total >= cases.length, `${cases.length} rejections`);
        const got: Record<string, number> = {};
        for (const [r, n] of Object.entries(st.drops.byReason)) if (n !== (st0.drops.byReason[r] ?? 0)) got[r] = n - (st0.drops.byReason[r] ?? 0);
        assert.deepEqual(got, want);
        for (const r of Object.keys(got)) seenReasons.add(r);
        assert.deepEqual(await view(), before, "catalog unchanged");
      }),
      { numRuns: 40 },
    );
    // Every reason of the model was reached (a test that cannot fail is a defect).
    assert.deepEqual([...seenReasons].sort(), ["duplicate", "out-of-order", "stale-epoch", "unknown-host"]);
    // The host itself is still heard: its next message is accepted (nothing was poisoned).
    const st0 = status();
    nc.publish(agentSubject(GOOD, "heartbeat"), good.heartbeat());
    await nc.flush();
    await waitFor(() => reg.core.host(GOOD)?.lastBeatSeq === good.seq, { what: "fresh heartbeat accepted" });
    assert.equal(status().drops.total, st0.drops.total);
  });

  it("hostile - past the NATS max payload the publish itself fails, the connection and the registry carry on", async () => {
    const max = nc.info!.max_payload;
    assert.throws(() => nc.publish(agentSubject(GOOD, "register"), new Uint8Array(max + 1)), /max_payload/);
    assert.throws(() => nc.publish("roster.v1.registry.snapshot.orders", new Uint8Array(2 * max)), /max_payload/);
    await nc.flush(); // still connected
    assert.equal(nc.isClosed(), false);
    const r = await nc.request("roster.v1.registry.snapshot.orders", new Uint8Array(0), { timeout: 2000 });
    const snap = decode(Snapshot, r.data);
    assert.ok(snap.ok);
    assert.equal(snap.value.instances.length, 1);
  });

  it("hostile - snapshot requests with hostile services and bodies: a valid snapshot or a counted drop, never a crash", async () => {
    const body = fc.oneof(
      fc.constant(new Uint8Array(0)),
      fc.nat({ max: 5 }).map((page) => te.encode(JSON.stringify({ v: 1, kind: "snapshot-request", page }))),
      fc.constantFrom(-1, 1.5, 2_000_000, "0", null).map((page) => te.encode(JSON.stringify({ v: 1, kind: "snapshot-request", page }))),
      garbage,
    );
    const service = fc.oneof(fc.constantFrom("orders", "payments", "never-seen"), token);
    const inbox = createInbox();
    const seenReasons = new Set<string>();
    let served = 0;
    let replies = 0;
    let badReplies = 0;
    nc.subscribe(`${inbox}.>`, {
      callback: (_e, m) => {
        // The server answers a request to a subject nobody listens on with a 503 status: not ours.
        if (m.headers?.code === 503) return;
        replies++;
        if (!decode(Snapshot, m.data).ok) badReplies++;
      },
    });
    await nc.flush();
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(service, body, fc.boolean()), { minLength: 1, maxLength: 6 }), async (batch) => {
        const before = await view();
        const st0 = status();
        const seen0 = seenSnapshot;
        const replies0 = replies;
        for (const [svc, data, withReply] of batch) {
          try {
            nc.publish(`roster.v1.registry.snapshot.${svc}`, data, withReply ? { reply: `${inbox}.${replies0}` } : undefined);
          } catch (err) {
            assert.match(String(err), /subject/i);
          }
        }
        await nc.flush();
        await observer.flush();
        const delivered = seenSnapshot - seen0;
        // Every delivered request is answered or dropped-and-counted (no-reply, bad-subject, not-json, invalid, too-large).
        const st = await settle(
          (s) => s.snapshotsServed - st0.snapshotsServed + (s.drops.byKind["snapshot"] ?? 0) - (st0.drops.byKind["snapshot"] ?? 0) >= delivered,
          `${delivered} snapshot requests handled`,
        );
        assert.equal(st.snapshotsServed - st0.snapshotsServed + (st.drops.byKind["snapshot"] ?? 0) - (st0.drops.byKind["snapshot"] ?? 0), delivered);
        await waitFor(() => replies - replies0 === st.snapshotsServed - st0.snapshotsServed, { what: "every served snapshot arrived" });
        for (const [r, n] of Object.entries(st.drops.byReason)) if (n !== (st0.drops.byReason[r] ?? 0)) seenReasons.add(r);
        served += st.snapshotsServed - st0.snapshotsServed;
        assert.deepEqual(await view(), before, "catalog unchanged");
      }),
      { numRuns: 30 },
    );
    assert.equal(badReplies, 0, "every reply is a valid snapshot");
    assert.ok(served > 0, "some requests were valid and served");
    for (const r of ["no-reply", "bad-subject", "invalid"]) assert.ok(seenReasons.has(r), `reached ${r}: ${[...seenReasons].join(",")}`);
  });

  it("hostile - every HTTP route with hostile paths, queries, headers and methods: never a 5xx, catalog unchanged", async () => {
    // Lone surrogates cannot go on the wire as UTF-8 (a client would send U+FFFD); raw bad escapes can.
    const wellFormed = (s: string) => s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, "\ufffd");
    const enc = (s: string) => encodeURIComponent(wellFormed(s));
    const RAW = ["%ff", "%", "%zz", "%00", "%c0%ae", "..%2f..%2f", "%2e%2e", "a%2eb", "%e2%80%ae"];
    const q = (k: string, v: fc.Arbitrary<string>) =>
      fc.option(fc.oneof(v.map((s) => `${k}=${enc(s)}`), fc.constantFrom(...RAW).map((s) => `${k}=${s}`)), { nil: undefined });
    const anyStr = fc.oneof(fc.constantFrom(...HOSTILE_NAMES), fc.string({ unit: "grapheme", maxLength: 100 }), fc.string({ unit: "binary", maxLength: 300 }));
    const req = fc.record({
      method: fc.constantFrom("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"),
      route: fc.constantFrom("/v1/services/NAME/instances", "/v1/services", "/v1/status", "/healthz", "/readyz", "/v1/services/NAME", "/NAME", "/v1/services/NAME/instances/NAME"),
      name: fc.oneof(fc.constantFrom("orders", "payments", "unknown-svc", ...RAW), anyStr),
      encodeName: fc.boolean(),
      status: q("status", fc.oneof(fc.constantFrom("passing", "any", "critical", ""), anyStr)),
      zone: q("zone", anyStr),
      tag: q("tag", anyStr),
      // A numeric index blocks: only with a tiny wait (and jitter), so the run stays short.
      index: q("index", fc.oneof(fc.constantFrom("-1", "1e3", "0x10", "9".repeat(20), ""), anyStr.filter((s) => !/^\d+$/.test(s)))),
      wait: q("wait", fc.oneof(fc.constantFrom("-1s", "1ms", "0", "999999h", "abc"), anyStr)),
      extra: q("bogus", anyStr),
      ifNoneMatch: fc.option(anyStr.map((s) => s.replace(/[^\x20-\x7e]/g, "")), { nil: undefined }),
      body: fc.option(fc.oneof(anyStr, fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? "null")), { nil: undefined }),
    });
    await fc.assert(
      fc.asyncProperty(req, async (r) => {
        const before = await view();
        const name = RAW.includes(r.name) ? r.name : r.encodeName ? enc(r.name) : wellFormed(r.name);
        const query = [r.status, r.zone, r.tag, r.index, r.wait, r.extra].filter((x) => x !== undefined).join("&");
        const res = await reg.http.inject({
          method: r.method as "GET",
          url: r.route.replaceAll("NAME", name) + (query ? `?${query}` : ""),
          headers: { ...(r.ifNoneMatch !== undefined ? { "if-none-match": r.ifNoneMatch } : {}), ...(r.body !== undefined ? { "content-type": "application/json" } : {}) },
          ...(r.body !== undefined && r.method !== "GET" && r.method !== "HEAD" ? { payload: r.body } : {}),
        });
        assert.ok(res.statusCode < 500, `${r.method} ${r.route} → ${res.statusCode} ${res.body}`);
        if (res.statusCode >= 400 && r.method !== "HEAD") {
          const body = JSON.parse(res.body) as { code?: string };
          assert.match(body.code ?? "", /^ROSTER_[A-Z_]+$/);
        }
        assert.deepEqual(await view(), before, "catalog unchanged");
      }),
      { numRuns: 300 },
    );
    // A numeric index with a tiny wait returns at once-ish, valid or not.
    for (const index of ["0", "1", "999999999999999"]) {
      const res = await reg.http.inject({ method: "GET", url: `/v1/services/orders/instances?index=${index}&wait=5ms` });
      assert.equal(res.statusCode, 200);
    }
  });
});
