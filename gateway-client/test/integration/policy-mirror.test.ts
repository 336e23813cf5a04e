// Policies reach a gateway's mirror from the real registry over a real nats-server: snapshot,
// deltas, removal, a change the mirror missed (healed by the resync on a new registry epoch),
// and the last-known-good file.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { POLICY_BUCKET, PRESENCE_SUBJECT, PolicyRecord, encode, policySubject } from "roster-schemas";
import { NatsServer, waitFor } from "roster-testkit";
import type { Registry } from "roster-registry";
import { CatalogFollower } from "../../src/adapters/mirror.js";
import { startRegistry } from "./helpers.js";

const canary = {
  subsets: { stable: { tags: ["v1"] }, canary: { tags: ["v2"] } },
  split: [{ subset: "stable", weight: 95 }, { subset: "canary", weight: 5 }],
  timeouts: { try: "500ms" },
};

async function putPolicy(registry: Registry, service: string, body: unknown, method = "PUT"): Promise<number> {
  const res = await fetch(`${registry.url}/v1/services/${service}/policy`, { method, headers: body === undefined ? {} : { "content-type": "application/json" }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  assert.equal(res.status, 200, await res.clone().text());
  return ((await res.json()) as { revision: number }).revision;
}

describe("policy mirror", () => {
  let nats: NatsServer;
  let dir: string;
  let registry: Registry;
  let nc: NatsConnection;
  before(async () => {
    nats = await NatsServer.start();
    dir = await mkdtemp(join(tmpdir(), "roster-policy-mirror-"));
    registry = await startRegistry(nats.url);
    nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  });
  after(async () => {
    await nc?.close().catch(() => {});
    await registry?.close();
    await nats?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test("policy mirror - snapshot on follow, then every change as a delta, removal included", async () => {
    const first = await putPolicy(registry, "orders", canary);
    const mirror = new CatalogFollower({ presenceIntervalMs: 200, services: ["orders"] });
    try {
      mirror.attach(nc);
      const view = await mirror.policies.waitReady("orders", 5000);
      assert.deepEqual([view?.revision, view?.policy?.timeouts?.try, view?.policy?.split?.[1]?.weight], [first, 500, 5]);
      const seen: number[] = [];
      mirror.policies.on("change", (_s: string, v: { revision: number }) => seen.push(v.revision));
      const second = await putPolicy(registry, "orders", { ...canary, split: [{ subset: "stable", weight: 0 }, { subset: "canary", weight: 100 }] });
      await waitFor(() => mirror.policies.view("orders")?.revision === second, { what: "the flip" });
      assert.equal(mirror.policies.view("orders")!.policy!.split![1]!.weight, 100);
      const removed = await putPolicy(registry, "orders", undefined, "DELETE");
      await waitFor(() => mirror.policies.view("orders")?.revision === removed, { what: "the removal" });
      assert.equal(mirror.policies.view("orders")!.policy, null);
      assert.deepEqual(seen, [second, removed]);
      // (A delta may also arrive during a resync and be applied with its snapshot: no count asserted.)
      assert.equal(mirror.policies.stats.gaps, 0);
      // Hostile or broken deltas are dropped and counted; the policy in force stays.
      nc.publish(policySubject("orders"), "not json");
      nc.publish(policySubject("orders"), JSON.stringify({ v: 1, kind: "policy-delta", op: "put", service: "payments", revision: 999, prevRevision: removed, policy: {} }));
      nc.publish(policySubject("orders"), JSON.stringify({ v: 1, kind: "policy-delta", op: "put", service: "orders", revision: 998, prevRevision: removed, policy: { split: "all" } }));
      await nc.flush();
      await waitFor(() => mirror.policies.stats.invalid === 1 && Object.values(mirror.policies.stats.dropped).reduce((a, b) => a + b, 0) === 2, { what: "drops counted" });
      assert.deepEqual(mirror.policies.stats.dropped, { "policy-delta:not-json": 1, "policy-delta:wrong-service": 1 });
      assert.equal(mirror.policies.view("orders")!.policy, null, "the invalid policy was not applied");
      // A service without a policy is ready with none.
      mirror.ensure("payments");
      const none = await mirror.policies.waitReady("payments", 5000);
      assert.deepEqual([none?.revision, none?.policy], [0, null]);
    } finally {
      await mirror.close();
    }
  });

  test("policy mirror - a change the mirror never heard of arrives with the resync on a new registry epoch", async () => {
    // A presence-lost window far longer than the test: the new epoch heals it, not recovery from stale.
    const mirror = new CatalogFollower({ presenceIntervalMs: 200, presenceMissFactor: 1000, services: ["billing"] });
    try {
      // The mirror shares this connection: once the test hears a presence after attach, so did the mirror.
      const heard = nc.subscribe(PRESENCE_SUBJECT, { max: 1 });
      mirror.attach(nc);
      await mirror.policies.waitReady("billing", 5000);
      for await (const _ of heard) break;
      await registry.close();
      // Written straight into KV while no registry runs: no delta was ever published.
      const kv = await new Kvm(nc).open(POLICY_BUCKET);
      const rev = await kv.put("billing", encode(PolicyRecord, { v: 1, service: "billing", policy: { retries: { max: 0 } }, updatedAt: Date.now() }));
      registry = await startRegistry(nats.url);
      await waitFor(() => mirror.policies.view("billing")?.revision === rev, { timeoutMs: 10_000, what: "the resync after the new registry epoch" });
      assert.equal(mirror.policies.view("billing")!.policy!.retries!.max, 0);
    } finally {
      await mirror.close();
    }
  });

  test("policy mirror - a gateway that started while the registry was down gets the policy from the first presence it hears", async () => {
    await registry.close();
    const kv = await new Kvm(nc).open(POLICY_BUCKET);
    const rev = await kv.put("ledger", encode(PolicyRecord, { v: 1, service: "ledger", policy: { retries: { max: 0 } }, updatedAt: Date.now() }));
    // A presence-lost window far longer than the test: only the first presence can heal it, never recovery from stale.
    const mirror = new CatalogFollower({ presenceIntervalMs: 200, presenceMissFactor: 1000, services: ["ledger"] });
    try {
      mirror.attach(nc);
      // No registry answers: ready without a policy.
      const none = await mirror.policies.waitReady("ledger", 5000);
      assert.deepEqual([none?.revision, none?.policy], [0, null]);
      registry = await startRegistry(nats.url);
      await waitFor(() => mirror.policies.view("ledger")?.revision === rev, { timeoutMs: 10_000, what: "the resync on the first presence" });
      assert.equal(mirror.policies.view("ledger")!.policy!.retries!.max, 0);
    } finally {
      await mirror.close();
    }
  });

  test("policy mirror - the last-known-good file keeps the policies and serves them while NATS is unreachable", async () => {
    const file = join(dir, "lkg.json");
    const rev = await putPolicy(registry, "search", { ...canary, timeouts: { try: "250ms" } });
    const mirror = new CatalogFollower({ presenceIntervalMs: 200, services: ["search"], lastKnownGoodFile: file, lastKnownGoodDebounceMs: 20 });
    try {
      mirror.attach(nc);
      await waitFor(() => mirror.policies.view("search")?.revision === rev, { what: "policy" });
      await waitFor(async () => (await readFile(file, "utf8").catch(() => "")).includes('"250ms"'), { what: "the file" });
    } finally {
      await mirror.close();
    }
    // A new process, NATS unreachable: only the file.
    const offline = new CatalogFollower({ lastKnownGoodFile: file });
    try {
      await offline.loadLastKnownGood();
      const view = offline.policies.view("search");
      assert.deepEqual([view?.revision, view?.fromLastKnownGood, view?.policy?.timeouts?.try], [rev, true, 250]);
    } finally {
      await offline.close();
    }
  });
});
