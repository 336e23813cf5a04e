import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { agentSubject, snapshotSubject } from "roster-schemas";
import { NatsServer, metricValue, scrape, waitFor, type Sample } from "roster-testkit";
import { register as globalRegister } from "prom-client";
import type { Registry } from "../../src/app.js";
import { FakeAgent, getJson, inst, startRegistry } from "./helpers.js";

type TargetGroup = { targets: string[]; labels: Record<string, string> };

describe("registry /metrics and /v1/prometheus/targets (real nats-server)", () => {
  let nats: NatsServer;
  let reg: Registry;
  let nc: NatsConnection;
  let agent: FakeAgent;
  let other: FakeAgent;
  const stops: Array<() => void> = [];
  const metrics = () => scrape(`${reg.url}/metrics`);
  const value = (s: Sample[], name: string, labels: Record<string, string> = {}) => metricValue(s, name, labels) ?? 0;

  before(async () => {
    nats = await NatsServer.start();
    reg = await startRegistry(nats.url);
    nc = await connect({ servers: nats.url });
    // 1 s heartbeats (lost after 3 s of silence): a loaded machine must not make a host look lost.
    agent = await FakeAgent.connect(nats.url, "host-a", 1, 1000);
    other = await FakeAgent.connect(nats.url, "host-b", 1, 1000);
    stops.push(agent.beat(), other.beat());
  });

  after(async () => {
    for (const stop of stops) stop();
    await agent?.close().catch(() => undefined);
    await other?.close().catch(() => undefined);
    await nc?.close().catch(() => undefined);
    await reg?.close();
    await nats?.close();
  });

  it("metrics - catalog size, changes, publish lag and received messages move with real agent traffic", async () => {
    const before = await metrics();
    assert.equal(value(before, "roster_registry_catalog_instances"), 0);
    assert.equal(value(before, "roster_registry_nats_connected"), 1);
    assert.equal(value(before, "roster_registry_catalog_loaded"), 1);
    assert.equal(metricValue(before, "process_cpu_user_seconds_total"), undefined, "no process metrics for an embedded registry");
    assert.equal(value(before, "roster_registry_catalog_changes_total", { op: "put" }), 0);

    await agent.register([
      inst("a1", { zone: "eu-1", tags: ["prod", "v2"], meta: { "team.name": "pay", version: "2" } }),
      inst("a2", { port: 8081 }),
    ]);
    await other.register([inst("b1", { service: "billing", address: "::1", port: 9000, status: "critical" })]);
    await agent.heartbeat();
    await agent.heartbeat();
    const s = await waitFor(async () => {
      const m = await metrics();
      // Memory (instances) shows a write when it is sent; the write counters move when JetStream acks
      // it: wait for both, or a loaded machine reads the counters between the two.
      const settled = value(m, "roster_registry_catalog_instances") === 3 && value(m, "roster_registry_kv_writes_total") === 3;
      return settled && value(m, "roster_registry_messages_received_total", { kind: "heartbeat" }) >= 2 ? m : null;
    }, { what: "3 instances written and 2 heartbeats in /metrics" });
    assert.equal(value(s, "roster_registry_catalog_services"), 2);
    assert.equal(value(s, "roster_registry_hosts"), 2);
    assert.equal(value(s, "roster_registry_messages_received_total", { kind: "register" }), 2);
    assert.equal(value(s, "roster_registry_catalog_changes_total", { op: "put" }), 3);
    assert.equal(value(s, "roster_registry_kv_writes_total"), 3);
    assert.equal(value(s, "roster_registry_catalog_revision"), reg.memory.revision);
    assert.equal(value(s, "roster_registry_delta_publish_lag_seconds_count"), 3, "one lag sample per change written");
    assert.ok(value(s, "roster_registry_delta_publish_lag_seconds_sum") > 0);
    assert.equal(value(s, "roster_registry_self_preservation"), 0);
    // A steady heartbeat writes nothing: the change counter stays where it was.
    await agent.heartbeat();
    await waitFor(async () => value(await metrics(), "roster_registry_messages_received_total", { kind: "heartbeat" }) >= 3, { what: "third heartbeat" });
    assert.equal(value(await metrics(), "roster_registry_catalog_changes_total", { op: "put" }), 3);

    await agent.deregister(["a2"]);
    await waitFor(async () => value(await metrics(), "roster_registry_catalog_changes_total", { op: "delete" }) === 1, { what: "delete counted" });
    assert.equal(value(await metrics(), "roster_registry_catalog_instances"), 2);
  });

  it("metrics - a malformed message moves drops{reason,kind}, a snapshot request moves snapshot_requests", async () => {
    const before = await metrics();
    const notJson = value(before, "roster_registry_drops_total", { reason: "not-json", kind: "heartbeat" });
    const snaps = value(before, "roster_registry_snapshot_requests_total");
    nc.publish(agentSubject("host-a", "heartbeat"), new TextEncoder().encode("{not json"));
    nc.publish(agentSubject("host-a", "register"), new TextEncoder().encode(JSON.stringify({ v: 1 })));
    await nc.request(snapshotSubject("orders"), new Uint8Array(), { timeout: 2000 });
    const after = await waitFor(async () => {
      const m = await metrics();
      return value(m, "roster_registry_drops_total", { reason: "invalid", kind: "register" }) >= 1 ? m : null;
    }, { what: "drops in /metrics" });
    assert.equal(value(after, "roster_registry_drops_total", { reason: "not-json", kind: "heartbeat" }), notJson + 1);
    assert.equal(value(after, "roster_registry_drops_total", { reason: "not-json", kind: "register" }), 0);
    assert.equal(value(after, "roster_registry_snapshot_requests_total"), snaps + 1);
    // The registry's metrics are on its own Registry, never prom-client's global one.
    assert.equal((await globalRegister.getMetricsAsJSON()).filter((m) => m.name.startsWith("roster_")).length, 0);
  });

  it("metrics - the text format is served with Prometheus's content type", async () => {
    const res = await fetch(`${reg.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    assert.match(await res.text(), /# TYPE roster_registry_drops_total counter/);
  });

  it("prometheus sd - every instance is a target group with __meta_roster_* labels", async () => {
    const { status, body } = await getJson(`${reg.url}/v1/prometheus/targets`);
    assert.equal(status, 200);
    const groups = body as TargetGroup[];
    const a1 = groups.find((g) => g.labels.__meta_roster_instance === "a1");
    assert.deepEqual(a1, {
      targets: ["127.0.0.1:8080"],
      labels: {
        __meta_roster_service: "orders",
        __meta_roster_instance: "a1",
        __meta_roster_host: "host-a",
        __meta_roster_address: "127.0.0.1",
        __meta_roster_port: "8080",
        __meta_roster_status: "passing",
        __meta_roster_tags: ",prod,v2,",
        __meta_roster_weight: "100",
        __meta_roster_zone: "eu-1",
        __meta_roster_meta_team_name: "pay",
        __meta_roster_meta_version: "2",
      },
    });
    const b1 = groups.find((g) => g.labels.__meta_roster_instance === "b1");
    assert.deepEqual(b1?.targets, ["[::1]:9000"]);
    assert.equal(b1?.labels.__meta_roster_status, "critical", "default status=any keeps failing instances (up=0 alerts)");
    assert.equal(b1?.labels.__meta_roster_tags, ",,");
    assert.equal(groups.length, 2);
  });

  it("prometheus sd - ?status=passing and ?service= (repeatable, comma list) filter; bad names are 400", async () => {
    const ids = async (q: string) => ((await getJson(`${reg.url}/v1/prometheus/targets${q}`)).body as TargetGroup[]).map((g) => g.labels.__meta_roster_instance).sort();
    assert.deepEqual(await ids("?status=passing"), ["a1"]);
    assert.deepEqual(await ids("?service=billing"), ["b1"]);
    assert.deepEqual(await ids("?service=billing&service=orders"), ["a1", "b1"]);
    assert.deepEqual(await ids("?service=billing,orders&status=passing"), ["a1"]);
    assert.deepEqual(await ids("?service=never-seen"), []);
    const bad = await getJson(`${reg.url}/v1/prometheus/targets?service=no%20spaces`);
    assert.equal(bad.status, 400);
    assert.equal((bad.body as { code: string }).code, "ROSTER_BAD_REQUEST");
    const badStatus = await getJson(`${reg.url}/v1/prometheus/targets?status=critical`);
    assert.equal(badStatus.status, 400);
  });
});
