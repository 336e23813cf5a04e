#!/usr/bin/env node
// xDS fan-out: a health flip at the (simulated) agent until the LAST of N ADS streams has it,
// beside the same flip's catalog delta at a NATS subscriber; the registry's CPU and memory per
// stream; and the time for N clients opening at once to receive a 2,000-endpoint cluster.
// Real processes: nats-server (test kit), roster-registry (bin, ROSTER_XDS set), a simulated
// fleet speaking the real agent wire (this process), and load processes holding the N streams
// (bench/lib/xds-streams.mjs: raw grpc-js ADS streams, one HTTP/2 connection each, ACKing),
// spread over --load-procs processes as real clients are (bench/lib/xds-load.mjs; 1 = all in one).
// --flip-in=big flips instances of the BIG-endpoint cluster instead of the HOSTS-endpoint one:
// every flip then re-sends that whole cluster to every stream (a ClusterLoadAssignment is one
// resource, in state-of-the-world and delta xDS alike).
//
//   node bench/xds-fanout.mjs [--quick] [--streams=100] [--flips=100] [--hosts=20] [--big=2000]
//                             [--load-procs=4] [--flip-in=small|big] [--registry-bin=<other build>/registry/bin/roster-registry.js]
import { setTimeout as sleep } from "node:timers/promises";
import { connect } from "@nats-io/transport-node";
import { HealthMessage, agentSubject, encode, instanceDigest } from "roster-schemas";
import { NatsServer, freePort } from "roster-testkit";
import { closeHttp, getJson, instancesOf, metricValues } from "./lib/http.mjs";
import { progress } from "./lib/log.mjs";
import { commandLine, numberOption, stringOption } from "./lib/options.mjs";
import { cpuSeconds, rssMiB } from "./lib/procstat.mjs";
import { startRegistry } from "./lib/registry.mjs";
import { defer, runBench } from "./lib/run.mjs";
import { fmt, summarize } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";
import { wireFleet } from "./lib/wire-fleet.mjs";
import { startXdsLoad } from "./lib/xds-load.mjs";

const quick = process.argv.includes("--quick") || Boolean(process.env.BENCH_QUICK);
const STREAMS = numberOption("streams", 100);
const FLIPS = numberOption("flips", quick ? 30 : 100);
const HOSTS = numberOption("hosts", 20);
const BIG = numberOption("big", 2000);
const LOAD_PROCS = Math.max(1, numberOption("load-procs", 4));
const FLIP_IN = stringOption("flip-in", "small");
if (FLIP_IN !== "small" && FLIP_IN !== "big") throw new Error("--flip-in is small or big");
const FLIP_SERVICE = FLIP_IN === "big" ? "svc-big" : "svc-flip";
const FLIP_ENDPOINTS = FLIP_IN === "big" ? BIG : HOSTS;
const FLIP_GAP_MS = 200;
const REGISTRY_BIN = stringOption("registry-bin", "");
const now = () => performance.timeOrigin + performance.now();

await runBench("xds-fanout", quick ? 240 : 600, async () => {
  defer(() => closeHttp());
  const nats = await NatsServer.start();
  defer(() => nats.close());
  const xdsPort = await freePort();
  // --registry-bin: another build's registry (a before/after comparison in one sitting).
  const registry = await startRegistry({ natsUrl: nats.url, env: { ROSTER_XDS: `127.0.0.1:${xdsPort}` }, ...(REGISTRY_BIN ? { bin: REGISTRY_BIN } : {}) });
  defer(() => registry.stop());

  // The fleet: every host has one instance of svc-flip and BIG / HOSTS of svc-big.
  const hosts = [];
  for (let h = 0; h < HOSTS; h++) {
    const hostId = `xh-${String(h).padStart(3, "0")}`;
    const instances = [{ id: `flip-${h}`, service: "svc-flip", address: "127.0.0.1", port: 20000 + h, zone: `z${h % 3}`, tags: [], meta: {}, weight: 100, status: "passing", checks: [] }];
    for (let i = 0; i < BIG / HOSTS; i++) {
      instances.push({ id: `big-${h}-${i}`, service: "svc-big", address: `10.${h}.${i >> 8}.${i & 255}`, port: 8080, zone: `z${h % 3}`, tags: [], meta: {}, weight: 100, status: "passing", checks: [] });
    }
    hosts.push({ hostId, instances, seq: 0 });
  }
  const nc = await connect({ servers: nats.url });
  defer(() => nc.close());
  const stats = { registers: 0, heartbeats: 0, resyncs: 0, resyncReasons: {} };
  const digestOf = (host) => instanceDigest(host.instances.map((i) => ({ service: i.service, id: i.id, status: i.status, address: i.address, port: i.port })));
  const epoch = Date.now();
  const fleet = wireFleet(nc, { hosts, epoch, intervalMs: 1000, stats, digestOf });
  for (const h of hosts) fleet.publishRegister(h);
  const beat = setInterval(() => hosts.forEach((h) => fleet.publishHeartbeat(h)), 1000);
  defer(() => clearInterval(beat));
  for (const deadline = Date.now() + 60_000; ; ) {
    const r = await getJson(`${registry.httpUrl}/v1/services/svc-big/instances`).catch(() => null);
    if (r?.status === 200 && instancesOf(r.body).length === BIG) break;
    if (Date.now() > deadline) throw new Error("the fleet did not register in 60 s");
    await sleep(200);
  }
  progress(`xds-fanout: ${HOSTS} hosts, ${BIG + HOSTS} instances registered`);

  const load = await startXdsLoad({ natsUrl: nats.url, flipService: FLIP_SERVICE, procs: LOAD_PROCS });
  defer(() => load.stop());

  // Memory and CPU per stream: the registry before and after N streams are open and served.
  await sleep(2000);
  const rss0 = rssMiB(registry.pid);
  const cpuIdle0 = cpuSeconds(registry.pid);
  await sleep(5000);
  const idleCpu0 = (cpuSeconds(registry.pid) - cpuIdle0) / 5;
  await load.open({ tag: "flip", port: xdsPort, n: STREAMS, names: [FLIP_SERVICE], minEndpoints: FLIP_ENDPOINTS });
  await sleep(3000);
  const rss1 = rssMiB(registry.pid);
  const loadCpu = () => load.pids().reduce((a, pid) => a + cpuSeconds(pid), 0);
  const cpuIdle1 = cpuSeconds(registry.pid);
  const loadIdle1 = loadCpu();
  await sleep(5000);
  const idleCpu1 = (cpuSeconds(registry.pid) - cpuIdle1) / 5;
  const loadIdleCpu = (loadCpu() - loadIdle1) / 5;
  progress(`xds-fanout: ${STREAMS} streams open; registry RSS ${fmt(rss0, 1)} → ${fmt(rss1, 1)} MiB`);

  // Flips: one instance of svc-flip at a time, critical then passing, every FLIP_GAP_MS.
  const xds = [];
  const decoded = [];
  const delta = [];
  const xdsSpread = [];
  const pushOf = async () => {
    const m = await metricValues(`${registry.httpUrl}/metrics`, ["roster_registry_xds_push_seconds_sum", "roster_registry_xds_push_seconds_count"]);
    return { sum: m.roster_registry_xds_push_seconds_sum, count: m.roster_registry_xds_push_seconds_count };
  };
  const push0 = await pushOf();
  const cpuFlip0 = cpuSeconds(registry.pid);
  const loadCpu0 = loadCpu();
  for (let k = 0; k < FLIPS; k++) {
    const host = hosts[k % HOSTS];
    const inst = host.instances[FLIP_IN === "big" ? 1 : 0];
    const status = inst.status === "passing" ? "critical" : "passing";
    const armed = load.arm({ tag: "flip", k, service: FLIP_SERVICE, id: inst.id, status, want: status === "passing" ? "HEALTHY" : "UNHEALTHY" }).catch(() => null);
    await sleep(20); // the expectation is in place before the flip
    inst.status = status;
    const t0 = now();
    nc.publish(
      agentSubject(host.hostId, "health"),
      encode(HealthMessage, { v: 1, kind: "health", hostId: host.hostId, epoch, seq: ++host.seq, sentAt: Date.now(), service: FLIP_SERVICE, instanceId: inst.id, check: { id: "grpc-0", type: "grpc", status, since: Date.now() }, instanceStatus: status }, "health"),
    );
    const seen = await armed;
    if (seen) {
      xds.push(seen.xdsLast - t0);
      decoded.push(seen.decodedLast - t0);
      delta.push(seen.delta - t0);
      xdsSpread.push(seen.xdsLast - seen.xdsFirst);
    } else progress(`xds-fanout: flip ${k} not seen by every stream in 10 s`);
    await sleep(FLIP_GAP_MS);
  }
  const flipCpu = cpuSeconds(registry.pid) - cpuFlip0;
  const loadFlipCpu = loadCpu() - loadCpu0;
  const push1 = await pushOf();
  const pushMeanMs = ((push1.sum - push0.sum) / (push1.count - push0.count)) * 1000;
  await load.close("flip");

  // A 2,000-endpoint cluster to N streams opened at once.
  await sleep(1000);
  const bigRuns = [];
  for (let r = 0; r < (quick ? 2 : 5); r++) {
    const o = await load.open({ tag: `big-${r}`, port: xdsPort, n: STREAMS, names: ["svc-big"], minEndpoints: BIG });
    bigRuns.push({ ms: o.lastAt - o.t0, firstMs: o.firstAt - o.t0, bytes: o.bytes });
    await load.close(`big-${r}`);
    await sleep(1000);
  }

  const x = summarize(xds);
  const xd = summarize(decoded);
  const d = summarize(delta);
  const s = summarize(xdsSpread);
  const b = summarize(bigRuns.map((r) => r.ms));
  const bFirst = summarize(bigRuns.map((r) => r.firstMs));
  // The flip phase's CPU minus what the idle streams cost over the same time, per flip per stream.
  const flipSeconds = FLIPS * (FLIP_GAP_MS + 20) / 1000;
  const perUpdateUs = ((flipCpu - idleCpu1 * flipSeconds) / (FLIPS * STREAMS)) * 1e6;
  // What the client side spends per stream per update (receive, decode, ACK): a process holding
  // S streams spends S times this before its last stream's response is handled.
  const loadPerUpdateUs = ((loadFlipCpu - loadIdleCpu * flipSeconds) / (FLIPS * STREAMS)) * 1e6;
  printReport({
    title: `xDS fan-out: health flip → the last of ${STREAMS} ADS streams (${LOAD_PROCS} load processes), beside the catalog delta`,
    command: commandLine("bench/xds-fanout.mjs"),
    params: { streams: STREAMS, loadProcs: LOAD_PROCS, flips: FLIPS, hosts: HOSTS, bigCluster: BIG, flipIn: `${FLIP_SERVICE} (${FLIP_ENDPOINTS} endpoints)`, flipGapMs: FLIP_GAP_MS },
    tables: [
      {
        caption: "From the agent's health message (published by the fleet) to ... (ms)",
        headers: ["leg", "n", "p50", "p99", "max"],
        rows: [
          ["catalog delta at a NATS subscriber", d.n, fmt(d.p50, 2), fmt(d.p99, 2), fmt(d.max, 2)],
          [`xDS update arrived at the LAST of ${STREAMS} ADS streams`, x.n, fmt(x.p50, 2), fmt(x.p99, 2), fmt(x.max, 2)],
          [`... and decoded there (its ClusterLoadAssignment read)`, xd.n, fmt(xd.p50, 2), fmt(xd.p99, 2), fmt(xd.max, 2)],
          [`spread: first to last of the ${STREAMS} streams`, s.n, fmt(s.p50, 2), fmt(s.p99, 2), fmt(s.max, 2)],
        ],
      },
      {
        caption: "The registry's cost of xDS streams",
        headers: ["what", "figure"],
        rows: [
          ["RSS before / with streams (MiB)", `${fmt(rss0, 1)} / ${fmt(rss1, 1)}`],
          ["memory per stream (KiB)", fmt(((rss1 - rss0) * 1024) / STREAMS, 1)],
          ["CPU at rest, 0 / N streams (% of a core)", `${fmt(idleCpu0 * 100, 2)} / ${fmt(idleCpu1 * 100, 2)}`],
          ["CPU of the flip phase per flip, all streams (ms)", fmt((flipCpu / FLIPS) * 1000, 2)],
          ["CPU per stream per update, at-rest CPU subtracted (µs)", fmt(perUpdateUs, 1)],
          [`registry push time: change in memory → written to all ${STREAMS} streams, mean (ms)`, fmt(pushMeanMs, 2)],
          [`load processes' CPU per stream per update: receive, decode, ACK (µs, at-rest CPU subtracted; ${Math.ceil(STREAMS / LOAD_PROCS)} streams per process)`, fmt(loadPerUpdateUs, 1)],
        ],
      },
      {
        caption: `${STREAMS} streams opened at once until the last holds the ${BIG}-endpoint cluster (CDS + EDS)`,
        headers: ["runs", "last stream p50 (ms)", "last stream max (ms)", "first stream p50 (ms)", "EDS DiscoveryResponse bytes"],
        rows: [[b.n, fmt(b.p50, 1), fmt(b.max, 1), fmt(bFirst.p50, 1), bigRuns[0]?.bytes ?? ""]],
      },
    ],
    notes: [
      "Times are epoch milliseconds from performance.timeOrigin + performance.now() in the fleet process and the load process (one machine, one clock).",
      `${LOAD_PROCS} load process(es) hold the streams (one HTTP/2 connection each) and ACK each response at once; the registry sends one response per type per stream and the next after the ACK.`,
      "Arrived: grpc-js handed the response to the stream's handler (before decoding). Decoded: that stream's ClusterLoadAssignment decoded. A load process handles its streams' responses one after the other, so with fewer processes the last stream also waits for the others' decoding: real clients decode in their own processes.",
      "The machine is shared with other engineers' builds and tests: the load average above is part of the result.",
    ],
    figures: { loadProcs: LOAD_PROCS, flipIn: FLIP_SERVICE, xds: x, xdsDecoded: xd, delta: d, spread: s, rss0, rss1, perStreamKiB: ((rss1 - rss0) * 1024) / STREAMS, idleCpu0, idleCpu1, perUpdateUs, loadPerUpdateUs, flipCpuPerFlipMs: (flipCpu / FLIPS) * 1000, pushMeanMs, big: b, bigFirst: bFirst, bigBytes: bigRuns[0]?.bytes },
  });
  if (x.n < FLIPS * 0.9) throw new Error(`only ${x.n} of ${FLIPS} flips reached every stream`);
});
