import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { PRESENCE_SUBJECT, PresenceMessage, ResyncMessage, Snapshot, decode, resyncSubject, snapshotSubject } from "roster-schemas";
import { NatsServer, waitFor } from "roster-testkit";
import type { Registry } from "../../src/app.js";
import { FakeAgent, collectDeltas, getJson, inst, startRegistry, type Inst } from "./helpers.js";

describe("registry lifecycle (real nats-server)", () => {
  let nats: NatsServer;
  let reg: Registry;
  let nc: NatsConnection;
  const agents: FakeAgent[] = [];

  before(async () => {
    nats = await NatsServer.start();
    reg = await startRegistry(nats.url, { deregisterAfter: "1s" });
    nc = await connect({ servers: nats.url });
  });

  after(async () => {
    for (const a of agents) await a.close().catch(() => undefined);
    await nc?.close().catch(() => undefined);
    await reg?.close();
    await nats?.close();
  });

  const instances = async (service: string, query = "") => getJson(`${reg.url}/v1/services/${service}/instances${query}`);

  it("lifecycle - register: instances appear passing, index increases, deltas chain by prevRevision", async () => {
    const { deltas, sub } = collectDeltas(nc, "orders");
    await nc.flush();
    const a = await FakeAgent.connect(nats.url, "host-a");
    agents.push(a);
    await a.register([inst("a1", { port: 8001 }), inst("a2", { port: 8002, tags: ["blue"], zone: "z1" })]);
    const res = await waitFor(async () => {
      const r = await instances("orders");
      return r.status === 200 && (r.body as Inst[]).length === 2 ? r : null;
    }, { what: "two instances" });
    const body = res.body as Inst[];
    assert.deepEqual(body.map((i) => [i.id, i.status, i.host]), [["a1", "passing", "host-a"], ["a2", "passing", "host-a"]]);
    const index = Number(res.headers.get("x-roster-index"));
    assert.ok(index > 0);
    await waitFor(() => deltas.length === 2, { what: "two deltas" });
    assert.equal(deltas[0]!.prevRevision, 0);
    assert.equal(deltas[1]!.prevRevision, deltas[0]!.revision);
    assert.equal(deltas[1]!.revision, index);
    // filters
    assert.deepEqual(((await instances("orders", "?tag=blue")).body as Inst[]).map((i) => i.id), ["a2"]);
    assert.deepEqual(((await instances("orders", "?zone=z1")).body as Inst[]).map((i) => i.id), ["a2"]);
    const list = await getJson(`${reg.url}/v1/services`);
    assert.deepEqual(list.body, [{ name: "orders", instances: 2, passing: 2 }]);
    assert.ok(Number(list.headers.get("x-roster-index")) >= index);
    sub.unsubscribe();
  });

  it("lifecycle - health critical is one delta; steady heartbeats write nothing", async () => {
    const a = agents[0]!;
    const { deltas, sub } = collectDeltas(nc, "orders");
    await nc.flush();
    const before = reg.memory.service("orders").revision;
    await a.health("a1", "critical");
    await waitFor(() => deltas.length === 1, { what: "one delta" });
    assert.equal(deltas[0]!.op, "put");
    assert.equal(deltas[0]!.prevRevision, before);
    const r = await instances("orders", "?status=passing");
    assert.deepEqual((r.body as Inst[]).map((i) => i.id), ["a2"]);
    const rev = reg.memory.revision;
    const kvWrites = (reg.status().kv as { writes: number }).writes;
    for (let i = 0; i < 5; i++) {
      await a.heartbeat();
      await sleep(60);
    }
    await sleep(100);
    assert.equal(reg.memory.revision, rev, "revision must not move on steady heartbeats");
    assert.equal((reg.status().kv as { writes: number }).writes, kvWrites);
    assert.equal(deltas.length, 1);
    sub.unsubscribe();
  });

  it("lifecycle - snapshot reply is consistent with the deltas", async () => {
    const reply = await nc.request(snapshotSubject("orders"), new Uint8Array(), { timeout: 2000 });
    const snap = decode(Snapshot, reply.data);
    assert.ok(snap.ok);
    assert.equal(snap.value.known, true);
    assert.equal(snap.value.revision, reg.memory.service("orders").revision);
    assert.deepEqual(snap.value.instances.map((i) => [i.id, i.status]), [["a1", "critical"], ["a2", "passing"]]);
    const none = decode(Snapshot, (await nc.request(snapshotSubject("never-seen"), new Uint8Array(), { timeout: 2000 })).data);
    assert.ok(none.ok);
    assert.deepEqual([none.value.known, none.value.revision, none.value.instances.length], [false, 0, 0]);
  });

  it("lifecycle - a new epoch without an instance removes it", async () => {
    const restarted = await FakeAgent.connect(nats.url, "host-a", 2);
    agents.push(restarted);
    await restarted.register([inst("a2", { port: 8002, tags: ["blue"], zone: "z1" })]);
    await waitFor(async () => ((await instances("orders")).body as Inst[]).map((i) => i.id).join() === "a2", { what: "a1 removed" });
  });

  it("lifecycle - blocking query returns on change, times out with the same index; ETag gives 304", async () => {
    // host-a (epoch 2) keeps beating: 3 silent intervals after its register it would turn
    // agent-lost, moving the revision under the 300 ms query (seen on Node 22).
    await agents[1]!.heartbeat();
    const stopA = agents[1]!.beat();
    try {
      await blockingQuery();
    } finally {
      stopA();
    }
  });

  async function blockingQuery(): Promise<void> {
    const r0 = await instances("orders");
    const index = Number(r0.headers.get("x-roster-index"));
    const etag = r0.headers.get("etag")!;
    assert.equal(etag, `"${index}"`);
    const nm = await fetch(`${reg.url}/v1/services/orders/instances`, { headers: { "if-none-match": etag } });
    assert.equal(nm.status, 304);

    const t0 = Date.now();
    const timeout = await instances("orders", `?index=${index}&wait=300ms`);
    assert.ok(Date.now() - t0 >= 290, "waited");
    assert.equal(Number(timeout.headers.get("x-roster-index")), index);

    const b = await FakeAgent.connect(nats.url, "host-b");
    agents.push(b);
    const pending = instances("orders", `?index=${index}&wait=20s`);
    await sleep(100);
    const t1 = Date.now();
    await b.register([inst("b1", { port: 9001 })]);
    const changed = await pending;
    assert.ok(Date.now() - t1 < 5000, "returned on change, not at the timeout");
    assert.ok(Number(changed.headers.get("x-roster-index")) > index);
    assert.ok((changed.body as Inst[]).some((i) => i.id === "b1"));
  }

  it("lifecycle - a silent host becomes agent-lost after 3 intervals, then is removed after deregisterAfter", async () => {
    // The other hosts keep beating: otherwise 3 of 3 silent hosts is a mass silence (self-preservation).
    const stops = [agents[1]!.beat(), agents[2]!.beat()];
    const c = await FakeAgent.connect(nats.url, "host-c");
    agents.push(c);
    await c.register([inst("c1", { service: "payments", port: 7001 })]);
    await waitFor(async () => (await instances("payments")).status === 200, { what: "payments registered" });
    const t0 = Date.now();
    await waitFor(async () => {
      const i = ((await instances("payments")).body as Inst[])[0];
      return i?.status === "critical" && i.reason === "agent-lost";
    }, { what: "agent-lost", timeoutMs: 5000 });
    assert.ok(Date.now() - t0 >= 500, "not before ~3 × 200 ms");
    await waitFor(async () => {
      const r = await instances("payments");
      return r.status === 200 && (r.body as Inst[]).length === 0;
    }, { what: "expired", timeoutMs: 8000 });
    const gone = await instances("payments");
    assert.deepEqual(gone.body, [], "known service with no instances left is []");
    for (const stop of stops) stop();
    assert.equal(reg.status().selfPreservation, false);
  });

  it("lifecycle - presence is published; a digest mismatch or an unknown host gets a resync", async () => {
    const presence: PresenceMessage[] = [];
    const resyncs: ResyncMessage[] = [];
    const ps = nc.subscribe(PRESENCE_SUBJECT, { callback: (_e, m) => { const r = decode(PresenceMessage, m.data); if (r.ok) presence.push(r.value); } });
    const rs = nc.subscribe(resyncSubject("x").replace(/x$/, "*"), { callback: (_e, m) => { const r = decode(ResyncMessage, m.data); if (r.ok) resyncs.push(r.value); } });
    await nc.flush();
    await waitFor(() => presence.length >= 1, { what: "a presence message" });
    assert.equal(presence[0]!.revision, reg.memory.revision);
    const liar = await FakeAgent.connect(nats.url, "host-d");
    agents.push(liar);
    await liar.register([inst("d1", { service: "search" })]);
    liar.instances = [inst("d1", { service: "search", port: 1234 })]; // the agent now believes something else
    await liar.heartbeat();
    await waitFor(() => resyncs.some((r) => r.hostId === "host-d" && r.reason === "digest-mismatch"), { what: "digest-mismatch resync" });
    const stranger = await FakeAgent.connect(nats.url, "host-unknown");
    agents.push(stranger);
    await stranger.heartbeat();
    await waitFor(() => resyncs.some((r) => r.hostId === "host-unknown" && r.reason === "unknown-host"), { what: "unknown-host resync" });
    ps.unsubscribe();
    rs.unsubscribe();
  });

  it("lifecycle - HTTP errors: unknown service 404, bad query 400, unknown route 404, all JSON with a code", async () => {
    const nf = await instances("nope");
    assert.equal(nf.status, 404);
    assert.equal((nf.body as { code: string }).code, "ROSTER_SERVICE_NOT_FOUND");
    const bad = await instances("orders", "?status=weird");
    assert.equal(bad.status, 400);
    assert.equal((bad.body as { code: string }).code, "ROSTER_BAD_REQUEST");
    const badName = await getJson(`${reg.url}/v1/services/a*b/instances`);
    assert.equal(badName.status, 400);
    const route = await getJson(`${reg.url}/v2/whatever`);
    assert.equal(route.status, 404);
    assert.equal((route.body as { code: string }).code, "ROSTER_ROUTE_NOT_FOUND");
    assert.equal((await getJson(`${reg.url}/healthz`)).status, 200);
    assert.equal((await getJson(`${reg.url}/readyz`)).status, 200);
    const st = (await getJson(`${reg.url}/v1/status`)).body as { natsConnected: boolean; services: number };
    assert.equal(st.natsConnected, true);
    assert.ok(st.services >= 2);
  });
});
