// Traffic policies over the registry's HTTP API, in KV, as deltas and snapshots, against a real
// nats-server: PUT/GET/DELETE, scopes, a bad field named, a restart, a standby.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { POLICY_BUCKET, PolicyDelta, PolicySnapshot, decode, policySnapshotSubject, policySubject } from "roster-schemas";
import { NatsServer, waitFor } from "roster-testkit";
import type { Registry } from "../../src/app.js";
import { FakeAgent, getJson, inst, startRegistry } from "./helpers.js";

const READ = "r".repeat(32);
const WRITE = "w".repeat(32);
const auth = { auth: { tokens: [{ name: "reader", token: READ, scopes: ["read" as const] }, { name: "writer", token: WRITE, scopes: ["read" as const, "write" as const] }] } };

const canary = {
  subsets: { stable: { tags: ["v1"] }, canary: { meta: { version: "2.0.0" } } },
  split: [
    { subset: "stable", weight: 95 },
    { subset: "canary", weight: 5 },
  ],
  routes: [{ match: { headers: { "x-canary": "always" } }, subset: "canary" }],
  timeouts: { try: "500ms", deadline: "2s" },
  fallback: { status: 503, body: '{"error":"try later"}', headers: { "retry-after": "2" } },
};

type Answer = { service: string; revision: number; policy: Record<string, unknown>; split: Array<{ subset: string; share: number; usable: boolean; instances: number }> };

describe("registry policies (real nats-server)", () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let registry: Registry;
  let agent: FakeAgent;
  let stopBeat = () => {};
  const deltas: PolicyDelta[] = [];

  const call = (method: string, path: string, opts: { token?: string; body?: unknown; headers?: Record<string, string>; base?: string } = {}) =>
    getJson(`${opts.base ?? registry.url}${path}`, {
      method,
      headers: {
        ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
        ...(opts.body !== undefined ? { "content-type": "application/json" } : {}),
        ...opts.headers,
      },
      ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
    });

  before(async () => {
    nats = await NatsServer.start();
    nc = await connect({ servers: nats.url });
    nc.subscribe(policySubject("orders"), { callback: (_e, m) => { const r = decode(PolicyDelta, m.data); if (r.ok) deltas.push(r.value); } });
    await nc.flush();
    registry = await startRegistry(nats.url, { http: { listen: "127.0.0.1:0", ...auth } });
    agent = await FakeAgent.connect(nats.url, "host-p");
  });

  after(async () => {
    stopBeat();
    await registry?.close();
    await agent?.close().catch(() => undefined);
    await nc?.close().catch(() => undefined);
    await nats?.close();
  });

  it("policy - anonymous and read-only callers cannot PUT or DELETE; readers can GET", async () => {
    assert.equal((await call("PUT", "/v1/services/orders/policy", { body: canary })).status, 401);
    const ro = await call("PUT", "/v1/services/orders/policy", { token: READ, body: canary });
    assert.equal(ro.status, 403);
    assert.equal((ro.body as { code: string }).code, "ROSTER_FORBIDDEN");
    assert.equal((await call("DELETE", "/v1/services/orders/policy", { token: READ })).status, 403);
    assert.equal((await call("DELETE", "/v1/services/orders/policy")).status, 401);
    assert.equal((await call("GET", "/v1/services/orders/policy")).status, 401);
    const none = await call("GET", "/v1/services/orders/policy", { token: READ });
    assert.equal(none.status, 404);
    assert.equal((none.body as { code: string }).code, "ROSTER_POLICY_NOT_FOUND");
    assert.equal(deltas.length, 0, "nothing was written");
    const kv = await new Kvm(nc).open(POLICY_BUCKET);
    assert.equal(await kv.get("orders"), null);
  });

  it("policy - a bad field is named in a 400 ROSTER_POLICY_INVALID", async () => {
    const bad = await call("PUT", "/v1/services/orders/policy", { token: WRITE, body: { ...canary, split: [{ subset: "stable", weight: 95 }, { subset: "canry", weight: 5 }] } });
    assert.equal(bad.status, 400);
    assert.equal((bad.body as { code: string }).code, "ROSTER_POLICY_INVALID");
    assert.match((bad.body as { message: string }).message, /split\[1\]\.subset: unknown subset "canry"/);
    const typo = await call("PUT", "/v1/services/orders/policy", { token: WRITE, body: { ...canary, timeouts: { try: "fast" } } });
    assert.match((typo.body as { message: string }).message, /timeouts\.try/);
    const unknown = await call("PUT", "/v1/services/orders/policy", { token: WRITE, body: { ...canary, retry: { max: 1 } } });
    assert.match((unknown.body as { message: string }).message, /retry/);
    const notObject = await call("PUT", "/v1/services/orders/policy", { token: WRITE, body: [1] });
    assert.equal((notObject.body as { code: string }).code, "ROSTER_POLICY_INVALID");
    assert.equal((await call("PUT", "/v1/services/a.b/policy", { token: WRITE, body: canary })).status, 400);
    assert.equal(deltas.length, 0);
  });

  it("policy - PUT stores and publishes, GET answers with ETag and the live split, If-Match guards, snapshot over NATS", async () => {
    await agent.register([
      inst("s1", { tags: ["v1"], port: 8001 }),
      inst("s2", { tags: ["v1"], port: 8002 }),
      inst("c1", { meta: { version: "2.0.0" }, port: 8003 }),
    ]);
    stopBeat = agent.beat(); // else the host is declared lost on a slow machine, and nothing is usable
    await waitFor(() => registry.memory.service("orders").instances.length === 3, { what: "instances" });
    const put = await call("PUT", "/v1/services/orders/policy", { token: WRITE, body: canary });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const first = put.body as Answer;
    assert.ok(first.revision > 0);
    assert.equal(put.headers.get("etag"), `"${first.revision}"`);
    await waitFor(() => deltas.length === 1, { what: "a policy delta" });
    assert.deepEqual({ op: deltas[0]!.op, revision: deltas[0]!.revision, prevRevision: deltas[0]!.prevRevision }, { op: "put", revision: first.revision, prevRevision: 0 });

    const got = await call("GET", "/v1/services/orders/policy", { token: READ });
    const body = got.body as Answer;
    assert.deepEqual(body.policy, canary, "stored as written (durations as text)");
    assert.deepEqual(body.split.map((s) => [s.subset, s.instances, Math.round(s.share * 100)]), [["stable", 2, 95], ["canary", 1, 5]]);
    assert.equal((await call("GET", "/v1/services/orders/policy", { token: READ, headers: { "if-none-match": `"${first.revision}"` } })).status, 304);

    // The canary's only instance fails: its share goes to the rest.
    await agent.health("c1", "critical");
    await waitFor(async () => ((await call("GET", "/v1/services/orders/policy", { token: READ })).body as Answer).split[0]!.share === 1, { what: "share moved to stable" });

    const flipped = { ...canary, split: [{ subset: "stable", weight: 0 }, { subset: "canary", weight: 100 }] };
    const stale = await call("PUT", "/v1/services/orders/policy", { token: WRITE, body: flipped, headers: { "if-match": `"${first.revision - 1}"` } });
    assert.equal(stale.status, 412);
    assert.equal((stale.body as { code: string }).code, "ROSTER_PRECONDITION_FAILED");
    const second = await call("PUT", "/v1/services/orders/policy", { token: WRITE, body: flipped, headers: { "if-match": `"${first.revision}"` } });
    assert.equal(second.status, 200);
    await waitFor(() => deltas.length === 2, { what: "second delta" });
    assert.equal(deltas[1]!.prevRevision, first.revision, "prevRevision chains");

    const snap = decode(PolicySnapshot, (await nc.request(policySnapshotSubject("orders"), new Uint8Array(0), { timeout: 2000 })).data);
    assert.ok(snap.ok);
    assert.equal(snap.value.revision, (second.body as Answer).revision);
    assert.deepEqual(snap.value.policy, flipped);
    const unknownSnap = decode(PolicySnapshot, (await nc.request(policySnapshotSubject("nobody"), new Uint8Array(0), { timeout: 2000 })).data);
    assert.ok(unknownSnap.ok);
    assert.deepEqual([unknownSnap.value.revision, unknownSnap.value.policy], [0, null]);

    const docs = (await call("GET", "/docs/json", { token: READ })).body as { paths: Record<string, Record<string, unknown>> };
    assert.deepEqual(Object.keys(docs.paths["/v1/services/{name}/policy"] ?? {}).sort(), ["delete", "get", "put"], "documented in OpenAPI");
    const list = await call("GET", "/v1/policies", { token: READ });
    assert.deepEqual((list.body as Answer[]).map((a) => a.service), ["orders"]);
  });

  it("policy - a PUT whose memory lags KV (a record it could not read) still writes on top of KV's revision", async () => {
    // The registry compares-and-sets against the revision in its memory. A record it ignores
    // (corrupt: someone else's bad write) leaves memory behind KV, deterministically: the write
    // must fail the CAS, read KV, and land on the real revision; an If-Match is judged on KV.
    const status = async () => ((await call("GET", "/v1/status", { token: READ })).body as { policies: { conflicts: number; corruptRecords: number } }).policies;
    const kv = await new Kvm(nc).open(POLICY_BUCKET);
    const known = ((await call("GET", "/v1/services/orders/policy", { token: READ })).body as Answer).revision;
    const before = await status();
    const corrupt = await kv.put("orders", new TextEncoder().encode("not a policy record"));
    await waitFor(async () => (await status()).corruptRecords > before.corruptRecords, { what: "the registry saw the corrupt record" });
    assert.equal(((await call("GET", "/v1/services/orders/policy", { token: READ })).body as Answer).revision, known, "memory lags KV");

    const stale = await call("PUT", "/v1/services/orders/policy", { token: WRITE, body: canary, headers: { "if-match": `"${known}"` } });
    assert.equal(stale.status, 412, "If-Match on memory's revision: KV moved on");
    const onKv = await call("PUT", "/v1/services/orders/policy", { token: WRITE, body: canary, headers: { "if-match": `"${corrupt}"` } });
    assert.equal(onKv.status, 200, "If-Match on KV's revision, which memory does not know");
    await waitFor(() => deltas.at(-1)?.revision === (onKv.body as Answer).revision, { what: "its delta" });
    assert.equal(deltas.at(-1)!.prevRevision, corrupt, "the delta chains on KV's revision");

    const again = await kv.put("orders", new TextEncoder().encode("{}"));
    await waitFor(async () => (await status()).corruptRecords > before.corruptRecords + 1, { what: "the second corrupt record seen" });
    const conflictsBefore = (await status()).conflicts;
    const plain = await call("PUT", "/v1/services/orders/policy", { token: WRITE, body: canary });
    assert.equal(plain.status, 200);
    await waitFor(() => deltas.at(-1)?.revision === (plain.body as Answer).revision, { what: "its delta" });
    assert.equal(deltas.at(-1)!.prevRevision, again, "no If-Match: the failed CAS read KV and wrote on top");
    assert.equal((await status()).conflicts, conflictsBefore + 1, "one compare-and-set failed on the stale revision");
  });

  it("policy - survives a registry restart", async () => {
    const before = (await call("GET", "/v1/services/orders/policy", { token: READ })).body as Answer;
    await registry.close();
    registry = await startRegistry(nats.url, { http: { listen: "127.0.0.1:0", ...auth } });
    const after = (await call("GET", "/v1/services/orders/policy", { token: READ })).body as Answer;
    assert.deepEqual([after.revision, after.policy], [before.revision, before.policy]);
  });

  it("policy - a standby serves the policy and its changes; DELETE leaves a delete delta and a 404", async () => {
    const leader = await startRegistry(nats.url, { lease: { enabled: true, ttl: "600ms", margin: "200ms" } });
    const standby = await startRegistry(nats.url, { lease: { enabled: true, ttl: "600ms", margin: "200ms" } });
    try {
      await waitFor(async () => (await getJson(`${standby.url}/v1/status`)).body && ((await getJson(`${standby.url}/v1/status`)).body as { role: string }).role === "standby", { what: "a standby" });
      const onStandby = (await getJson(`${standby.url}/v1/services/orders/policy`)).body as Answer;
      const current = (await call("GET", "/v1/services/orders/policy", { token: READ })).body as Answer;
      assert.equal(onStandby.revision, current.revision);
      const del = await call("DELETE", "/v1/services/orders/policy", { token: WRITE });
      assert.equal(del.status, 200);
      await waitFor(() => deltas.at(-1)?.op === "delete", { what: "a delete delta" });
      assert.equal(deltas.at(-1)!.prevRevision, current.revision);
      await waitFor(async () => (await getJson(`${standby.url}/v1/services/orders/policy`)).status === 404, { what: "the standby sees the delete" });
      assert.equal((await call("DELETE", "/v1/services/orders/policy", { token: WRITE })).status, 404);
      // A standby may write too (CAS on the key): the others see it through their watch.
      const put = await getJson(`${standby.url}/v1/services/orders/policy`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(canary) });
      assert.equal(put.status, 200);
      await waitFor(async () => (await call("GET", "/v1/services/orders/policy", { token: READ })).status === 200, { what: "the first registry sees the standby's write" });
      assert.equal((await getJson(`${leader.url}/v1/services/orders/policy`)).status, 200);
    } finally {
      await standby.close();
      await leader.close();
    }
  });
});
