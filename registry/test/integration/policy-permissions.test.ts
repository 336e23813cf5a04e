// Traffic policies under the generated NATS users (scripts/nats-users.mjs) on a real nats-server:
// the registry's user writes the policy bucket and publishes deltas; a gateway user receives
// deltas and snapshots but can neither forge a delta nor write the bucket.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Kvm } from "@nats-io/kv";
import { POLICY_BUCKET, PolicyDelta, PolicySnapshot, decode, policySnapshotSubject, policySubject } from "roster-schemas";
import { connectAs, startSecuredNats, waitFor, type SecuredNats } from "roster-testkit";
import type { Registry } from "../../src/app.js";
import { startRegistry } from "./helpers.js";

describe("policy NATS permissions (generated users, real nats-server)", () => {
  let nats: SecuredNats;
  let registry: Registry;
  const closers: (() => Promise<unknown>)[] = [];

  before(async () => {
    nats = await startSecuredNats({ hosts: ["host-a"], gateways: 1 });
    registry = await startRegistry(nats.url, { nats: { url: nats.url, reconnectWait: 100, ...nats.auth("registry") } });
  });
  after(async () => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
    await registry?.close();
    await nats?.close();
  });

  it("policy permissions - a gateway user gets deltas and snapshots, cannot forge a delta or write the bucket", async () => {
    const g = await connectAs(nats, "gateway-1");
    closers.push(() => g.nc.close());
    const deltas: PolicyDelta[] = [];
    g.nc.subscribe(policySubject("orders"), { callback: (_e, m) => { const r = decode(PolicyDelta, m.data); if (r.ok) deltas.push(r.value); } });
    await g.nc.flush();
    const res = await fetch(`${registry.url}/v1/services/orders/policy`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ retries: { max: 1 } }) });
    assert.equal(res.status, 200, await res.text());
    await waitFor(() => deltas.length === 1, { timeoutMs: 5000, what: "the delta reaches the gateway user" });
    const snap = decode(PolicySnapshot, (await g.nc.request(policySnapshotSubject("orders"), new Uint8Array(0), { timeout: 3000 })).data);
    assert.ok(snap.ok && snap.value.revision === deltas[0]!.revision);
    assert.equal(g.violations.length, 0, g.violations.join(" | "));

    g.nc.publish(policySubject("orders"), JSON.stringify({ ...deltas[0], revision: 999, prevRevision: deltas[0]!.revision, policy: { retries: { max: 10 } } }));
    const kv = await new Kvm(g.nc).open(POLICY_BUCKET);
    await assert.rejects(kv.put("orders", "{}", { timeout: 2000 }), "a put through the KV API must fail");
    await waitFor(() => g.violations.some((v) => v.includes(`roster.v1.policy.orders`)) && g.violations.some((v) => v.includes(`$KV.${POLICY_BUCKET}.orders`)), { timeoutMs: 5000, what: "both violations" });
    assert.equal(deltas.length, 1, "the forged delta never went out");
    const stored = (await (await fetch(`${registry.url}/v1/services/orders/policy`)).json()) as { policy: unknown };
    assert.deepEqual(stored.policy, { retries: { max: 1 } });
  });
});
