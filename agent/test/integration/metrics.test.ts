import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, describe, it } from "node:test";
import { NatsServer, freePort, metricValue, scrape, waitFor } from "roster-testkit";
import { pino } from "pino";
import { build, type Agent } from "../../src/app.js";
import type { AgentConfig } from "../../src/config.js";
import { httpJson } from "./helpers.js";

const HOST = "metrics-host";

describe("agent /metrics (real nats-server, real checks)", () => {
  let nats: NatsServer;
  let agent: Agent;
  let upstream: Server;
  let base = "";
  let port = 0;

  before(async () => {
    nats = await NatsServer.start({ jetstream: false });
    upstream = createServer((_req, res) => res.end("ok"));
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    port = (upstream.address() as { port: number }).port;
    // A tcp check on another port than the instance's: allowed through the API by checkTargets "any" only.
    const config: AgentConfig = { host: { id: HOST }, heartbeatIntervalMs: 100, drainPeriodMs: 0, api: { host: "127.0.0.1", port: 0, checkTargets: "any" }, services: [] };
    agent = build(config, { logger: pino({ level: "silent" }), nats: nats.url, processMetrics: true });
    base = (await agent.start()).apiUrl;
    await waitFor(() => agent.link.isConnected, { timeoutMs: 5000, what: "agent connected" });
  });

  after(async () => {
    await agent?.close();
    await new Promise((r) => upstream?.close(r));
    await nats?.close();
  });

  it("metrics - check results by type and status, check latency, registrations and heartbeats move", async () => {
    const closed = await freePort();
    const before = await scrape(`${base}/metrics`);
    assert.equal(metricValue(before, "roster_agent_nats_connected"), 1);
    assert.equal(metricValue(before, "roster_agent_registrations_total", { source: "api" }), 0);
    assert.ok(metricValue(before, "process_resident_memory_bytes") !== undefined, "process metrics are on for the agent");

    const r = await httpJson("PUT", `${base}/v1/agent/instances`, {
      name: "web",
      address: "127.0.0.1",
      port,
      checks: [
        { type: "http", interval: "100ms", timeout: "2s" }, // a loaded test machine can take longer than the interval to answer
        { type: "tcp", port: closed, interval: "100ms", timeout: "200ms" },
      ],
    });
    assert.equal(r.status, 200);
    const m = await waitFor(async () => {
      const s = await scrape(`${base}/metrics`);
      const ok = (metricValue(s, "roster_agent_check_results_total", { type: "http", status: "passing" }) ?? 0) >= 2;
      const bad = (metricValue(s, "roster_agent_check_results_total", { type: "tcp", status: "critical" }) ?? 0) >= 2;
      return ok && bad && (metricValue(s, "roster_agent_messages_published_total", { kind: "heartbeat" }) ?? 0) >= 2 ? s : null;
    }, { timeoutMs: 5000, what: "check results and heartbeats in /metrics" });
    assert.equal(metricValue(m, "roster_agent_check_results_total", { type: "http", status: "critical" }) ?? 0, 0, "the listening upstream never fails its http check");
    assert.equal(metricValue(m, "roster_agent_check_results_total", { type: "tcp", status: "passing" }) ?? 0, 0, "the closed port never passes");
    assert.ok((metricValue(m, "roster_agent_check_duration_seconds_count", { type: "http" }) ?? 0) >= 2);
    assert.ok((metricValue(m, "roster_agent_check_duration_seconds_sum", { type: "http" }) ?? 0) > 0);
    assert.equal(metricValue(m, "roster_agent_check_duration_seconds_count", { type: "ttl" }), undefined);
    assert.equal(metricValue(m, "roster_agent_registrations_total", { source: "api" }), 1);
    assert.ok((metricValue(m, "roster_agent_messages_published_total", { kind: "register" }) ?? 0) >= 2, "one at connect, one for the API registration");
    assert.equal(metricValue(m, "roster_agent_instances"), 1);
  });

  it("metrics - a TTL report counts as a ttl result without a latency sample", async () => {
    const r = await httpJson("PUT", `${base}/v1/agent/instances`, { name: "batch", address: "127.0.0.1", port: 1, checks: [{ type: "ttl", ttl: "10s" }] });
    assert.equal(r.status, 200);
    const id = (r.json as { id: string }).id;
    assert.equal((await httpJson("PUT", `${base}/v1/agent/instances/${id}/checks/ttl-0/warn`)).status, 200);
    const m = await scrape(`${base}/metrics`);
    assert.equal(metricValue(m, "roster_agent_check_results_total", { type: "ttl", status: "warning" }), 1);
    assert.equal(metricValue(m, "roster_agent_check_duration_seconds_count", { type: "ttl" }), undefined);
  });
});
