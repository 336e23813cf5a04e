#!/usr/bin/env node
// Chaos, bounded in time: the whole system on real processes while faults are injected one at
// a time, then checks that nothing was lost and everything converged.
//
//   node scripts/chaos.mjs [--quick] [--rounds=N] [--out=bench/results/chaos.json]
//   npm run chaos            (npm run chaos -- --quick: one round, what .ci/run runs)
//
// Set-up: a 3-node NATS cluster (test kit), 2 registry replicas (their bin, kvReplicas 3,
// lease enabled with its default ttl), 3 agents (their bin) each watching 2 real demo service
// processes (bench/lib/demo-service.mjs) of service "chaos", and a gateway client
// (roster-gateway-client) sending idempotent GETs at a steady rate the whole time.
// Faults, in turn (each round): kill -9 of each NATS node (restarted after 2 s), kill -9 of the
// registry replica holding the lease (restarted once the other took over), kill -9 of an agent
// (restarted after 1 s; its services keep running).
// After each fault: the time until the system converged = every live replica ready, exactly one
// leader, every replica's HTTP view of "chaos" equal to KV, and equal to what every agent reports
// of its own instances (ids and statuses), with every registration present and passing.
// Expectations (exit 1 if one is violated): converged after every fault (within 45 s), every
// registration still there, no request of the gateway client failed (the demo instances never
// stop, so a healthy instance always existed), no spurious registry failover on a NATS fault.
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { CATALOG_BUCKET, CatalogInstance, decode } from "roster-schemas";
import { createGateway } from "roster-gateway-client";
import { NatsCluster, freePort, waitFor } from "roster-testkit";
import { startAgent } from "../bench/lib/agent.mjs";
import { closeHttp, getJson, instancesOf } from "../bench/lib/http.mjs";
import { progress } from "../bench/lib/log.mjs";
import { commandLine, numberOption, stringOption } from "../bench/lib/options.mjs";
import { startRegistry } from "../bench/lib/registry.mjs";
import { defer, runBench } from "../bench/lib/run.mjs";
import { fmt } from "../bench/lib/stats.mjs";
import { machineInfo, printReport } from "../bench/lib/table.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const quick = process.argv.includes("--quick") || Boolean(process.env.CHAOS_QUICK);
const rounds = Math.max(1, numberOption("rounds", quick ? 1 : 3));
const out = stringOption("out", join(root, "bench", "results", "chaos.json"));
const SERVICE = "chaos";
const AGENTS = 3;
const PER_AGENT = 2;
const RATE = 100; // requests per second from the gateway client
const CONVERGE_MS = 45_000;
const DEMO = join(root, "bench", "lib", "demo-service.mjs");
const maxSeconds = quick ? 230 : 120 + rounds * 150;

const injected = [];
const violations = [];
const expect = (ok, what) => {
  if (!ok) {
    violations.push(what);
    progress(`VIOLATION: ${what}`);
  }
  return ok;
};

await runBench("chaos", maxSeconds, async () => {
  progress(`chaos: ${rounds} round(s), deadline ${maxSeconds} s`);
  const cluster = await NatsCluster.start({ size: 3 });
  defer(() => cluster.close());
  const natsUrl = cluster.urls.join(",");
  const dir = await mkdtemp(join(tmpdir(), "roster-chaos-"));
  defer(() => rm(dir, { recursive: true, force: true }));
  const regConfig = join(dir, "registry.json");
  await writeFile(regConfig, JSON.stringify({ kvReplicas: 3, lease: { enabled: true } }));

  // Registries: a list of live replicas (a restarted one is a new entry).
  const registries = [];
  const startReplica = async () => {
    const r = await startRegistry({ natsUrl, args: ["--config", regConfig], env: { ROSTER_LOG_LEVEL: "warn" } });
    registries.push(r);
    return r;
  };
  defer(async () => {
    for (const r of registries) await r.stop().catch(() => undefined);
  });
  defer(() => closeHttp());
  await startReplica();
  await startReplica();

  // Demo instances (never stopped until the end) and their agents.
  const demos = [];
  defer(() => {
    for (const d of demos) d.kill("SIGKILL");
  });
  const agentConfigs = [];
  for (let a = 0; a < AGENTS; a++) {
    const services = [];
    for (let i = 0; i < PER_AGENT; i++) {
      const port = await freePort();
      demos.push(spawn(process.execPath, [DEMO, String(port)], { stdio: "ignore" }));
      services.push({ name: SERVICE, id: `chaos-${a}-${i}`, port, address: "127.0.0.1", checks: [{ type: "http", path: "/health", interval: "500ms", timeout: "300ms" }] });
    }
    agentConfigs.push({ host: { id: `chaos-host-${a}` }, heartbeat: { interval: "1s" }, drain: { period: "0s" }, services });
  }
  const expected = agentConfigs.flatMap((c) => c.services.map((s) => s.id)).sort();
  const agents = [];
  for (const config of agentConfigs) agents.push(await startAgent({ natsUrl, config }));
  defer(async () => {
    for (const a of agents) await a.stop().catch(() => undefined);
  });

  const kvNc = await connect({ servers: cluster.urls, maxReconnectAttempts: -1, reconnectTimeWait: 100, name: "chaos-kv-reader" });
  defer(() => kvNc.close());
  const kv = await new Kvm(kvNc).open(CATALOG_BUCKET).catch(async () => {
    await sleep(2000);
    return new Kvm(kvNc).open(CATALOG_BUCKET);
  });

  const live = () => registries.filter((r) => r.child.alive);
  const statusOf = async (r) => (await getJson(`${r.httpUrl}/v1/status`, { timeoutMs: 2000 })).body;
  const view = (list) => list.map((i) => `${i.id}:${i.status}`).sort().join(",");
  const kvView = async () => {
    const list = [];
    const keys = await kv.keys(`${SERVICE}.>`);
    for await (const k of keys) {
      const e = await kv.get(k);
      if (e?.operation === "PUT") {
        const r = decode(CatalogInstance, e.value);
        if (r.ok) list.push(r.value);
      }
    }
    return view(list);
  };
  const agentView = async () => {
    const list = [];
    for (const a of agents) {
      const r = await getJson(`http://${a.config.api.listen}/v1/agent/instances`, { timeoutMs: 2000 });
      for (const i of r.body?.instances ?? []) list.push({ id: i.id ?? i.registration?.id, status: i.status ?? i.registration?.status });
    }
    return view(list);
  };
  const wantView = expected.map((id) => `${id}:passing`).join(",");

  /** One probe of convergence; returns a reason when not converged. */
  const notConverged = async () => {
    const regs = live();
    const statuses = [];
    for (const r of regs) {
      if ((await getJson(`${r.httpUrl}/readyz`, { timeoutMs: 2000 })).status !== 200) return `${r.httpUrl} not ready`;
      statuses.push(await statusOf(r));
    }
    const leaders = statuses.filter((s) => s.role === "leader").length;
    if (leaders !== 1) return `${leaders} leaders`;
    const kvv = await kvView();
    if (kvv !== wantView) return `KV: ${kvv}`;
    for (const r of regs) {
      const res = await getJson(`${r.httpUrl}/v1/services/${SERVICE}/instances`, { timeoutMs: 2000 });
      const v = view(instancesOf(res.body));
      if (v !== kvv) return `${r.httpUrl}: ${v}`;
    }
    const av = await agentView();
    if (av !== kvv) return `agents: ${av}`;
    return null;
  };
  const converge = async (label, since) => {
    let last = "";
    try {
      await waitFor(async () => {
        last = await notConverged().catch((err) => String(err?.message ?? err));
        return last === null;
      }, { timeoutMs: CONVERGE_MS, intervalMs: 100, what: `convergence after ${label}` });
      return performance.now() - since;
    } catch {
      expect(false, `${label}: not converged within ${CONVERGE_MS / 1000} s (${last})`);
      return NaN;
    }
  };

  progress(`registries ${registries.map((r) => `${r.httpUrl} (pid ${r.pid})`).join(", ")}; agents ${agents.map((a) => a.pid).join(", ")}`);
  await converge("start", performance.now());

  // The gateway client: idempotent GETs at RATE/s; every failure is recorded with its time.
  const gw = await createGateway({ nats: cluster.urls, services: [SERVICE] });
  defer(() => gw.close());
  const load = { sent: 0, ok: 0, failed: 0, errors: {}, stopped: false };
  const t0 = performance.now();
  const loop = setInterval(() => {
    const due = Math.floor(((performance.now() - t0) * RATE) / 1000);
    while (!load.stopped && load.sent < due) {
      load.sent++;
      gw.request(SERVICE, { path: "/" }).then(
        async (res) => {
          await res.body.dump().catch(() => undefined);
          if (res.statusCode >= 200 && res.statusCode < 300) load.ok++;
          else fail(`HTTP ${res.statusCode}`);
        },
        (err) => fail(err?.code ?? err?.name ?? "error"),
      );
    }
  }, 5);
  const fail = (code) => {
    load.failed++;
    load.errors[code] = (load.errors[code] ?? 0) + 1;
  };
  defer(() => clearInterval(loop));
  await sleep(1000);

  const leaderEpoch = async () => {
    for (const r of live()) {
      const s = await statusOf(r).catch(() => null);
      if (s?.role === "leader") return { id: s.registryId, epoch: s.leaseEpoch };
    }
    return null;
  };

  for (let round = 1; round <= rounds; round++) {
    for (const node of cluster.nodes) {
      const before = await leaderEpoch();
      const failedBefore = load.failed;
      const at = performance.now();
      await node.stop("SIGKILL");
      await sleep(2000);
      await node.start();
      await cluster.waitFormed(30_000);
      const convergedMs = await converge(`kill -9 NATS ${node.name}`, at);
      const after = await leaderEpoch();
      const failover = before && after && (before.id !== after.id || before.epoch !== after.epoch);
      expect(!failover, `kill -9 NATS ${node.name}: the registry lease moved (${JSON.stringify(before)} → ${JSON.stringify(after)})`);
      injected.push({ round, fault: `kill -9 NATS ${node.name} (restart after 2 s)`, convergedMs, takeoverMs: NaN, failover: Boolean(failover), failedRequests: load.failed - failedBefore });
      progress(`round ${round}: NATS ${node.name} converged in ${fmt(convergedMs, 0)} ms`);
    }

    {
      const statuses = await Promise.all(live().map(async (r) => ({ r, s: await statusOf(r) })));
      const leader = statuses.find((x) => x.s.role === "leader");
      const standby = statuses.find((x) => x.s.role !== "leader");
      const failedBefore = load.failed;
      const at = performance.now();
      leader.r.child.kill("SIGKILL");
      let takeoverMs = NaN;
      await waitFor(async () => (await statusOf(standby.r).catch(() => ({}))).role === "leader", { timeoutMs: 20_000, intervalMs: 25, what: "the standby takes over" })
        .then(() => (takeoverMs = performance.now() - at))
        .catch(() => expect(false, "registry kill -9: the standby did not take over within 20 s"));
      await startReplica();
      const convergedMs = await converge("kill -9 registry leader", at);
      injected.push({ round, fault: "kill -9 registry leader (restarted after takeover)", convergedMs, takeoverMs, failover: true, failedRequests: load.failed - failedBefore });
      progress(`round ${round}: registry takeover ${fmt(takeoverMs, 0)} ms, converged in ${fmt(convergedMs, 0)} ms`);
    }

    {
      const i = (round - 1) % agents.length;
      const failedBefore = load.failed;
      const at = performance.now();
      agents[i].child.kill("SIGKILL");
      await sleep(1000);
      await agents[i].stop().catch(() => undefined);
      agents[i] = await startAgent({ natsUrl, config: agentConfigs[i] });
      const convergedMs = await converge(`kill -9 agent ${i}`, at);
      injected.push({ round, fault: `kill -9 agent chaos-host-${i} (restart after 1 s)`, convergedMs, takeoverMs: NaN, failover: false, failedRequests: load.failed - failedBefore });
      progress(`round ${round}: agent ${i} converged in ${fmt(convergedMs, 0)} ms`);
    }
  }

  await sleep(1000);
  load.stopped = true;
  clearInterval(loop);
  await waitFor(() => load.ok + load.failed === load.sent, { timeoutMs: 15_000, what: "the last requests" }).catch(() => undefined);
  const finalReason = await notConverged().catch((err) => String(err));
  expect(finalReason === null, `final state not converged: ${finalReason}`);
  expect((await kvView()) === wantView, "every registration is in KV, passing");
  expect(load.failed === 0, `${load.failed} of ${load.sent} requests failed while healthy instances existed: ${JSON.stringify(load.errors)}`);

  const result = { machine: machineInfo(), command: commandLine("scripts/chaos.mjs"), rounds, rate: RATE, injected, load, violations, ok: violations.length === 0 };
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, JSON.stringify(result, null, 2));
  printReport({
    title: "Chaos: NATS node, registry leader and agent kills under load",
    command: result.command,
    params: { rounds, registries: 2, agents: AGENTS, instances: expected.length, "requests/s": RATE, leaseTtl: "3s (default)" },
    tables: [
      {
        caption: "What was injected and what was observed (times from the kill)",
        headers: ["round", "fault", "registry takeover ms", "converged ms", "lease moved", "failed requests"],
        rows: injected.map((x) => [x.round, x.fault, fmt(x.takeoverMs, 0), fmt(x.convergedMs, 0), x.failover ? "yes" : "no", x.failedRequests]),
      },
      {
        caption: "Load through the faults (gateway client, idempotent GETs)",
        headers: ["sent", "ok", "failed", "errors"],
        rows: [[load.sent, load.ok, load.failed, JSON.stringify(load.errors)]],
      },
    ],
    notes: [...(violations.length ? violations.map((v) => `VIOLATED: ${v}`) : ["every expectation held"]), `JSON result: ${out}`],
  });
  if (violations.length) throw new Error(`${violations.length} expectation(s) violated`);
});
