#!/usr/bin/env node
// Catalog fan-out to many REAL gateway clients: what 1,000 clients x 50 services cost the
// server, and how fast a health transition reaches every one of them.
//
//   node bench/gateway-fanout.mjs [--quick] [--clients=1000] [--procs=4] [--services=50]
//     [--replicas=10] [--concurrency=50] [--steady-seconds=5] [--rate=10] [--flip-seconds=30]
//     [--reconnects=0] [--flip-services=N] [--client-services=N] [--watchers=0]
//     [--http-rate=5] [--http-seconds=40] [--xds-streams=0] [--xds-procs=4]
// --flip-services: flips touch only the first N services (svc-000 ...); --client-services: each
// gateway mirrors only the first N services; --watchers: N HTTP blocking-query watchers
// (bench/lib/index-watchers.mjs, a separate process) on svc-000, measured in a phase of their
// own after the clients' (flips at --http-rate for --http-seconds, on svc-000 only).
// (or BENCH_CLIENTS=..., BENCH_FLIP_SECONDS=... in the environment; --quick or BENCH_QUICK=1:
// 200 clients, 10 s of flips)
//
// Real processes, all on this machine:
//   nats-server (test kit, with its monitoring port for /varz)
//   roster-registry (its bin)
//   a fake agent fleet (bench/lib/fanout-agent.mjs): `replicas` hosts x `services` services, one
//     instance of each service per host, over the real wire (register, heartbeat, health)
//   `procs` client processes (bench/lib/fanout-clients.mjs), `clients / procs` gateways each, every
//     gateway `createGateway({ nats, services: [all] })` with its own NATS connection
//   this coordinator: an observer of roster.v1.catalog.* (when the registry published each delta)
//
// Phases: register the fleet → create every gateway (time until every mirror of every client
// holds a snapshot; registry CPU over it) → steady state (nats-server connections,
// subscriptions, RSS, CPU; client RSS per client) → health flips at `rate`/s for
// `flip-seconds`, each stamped with its send time in the check's `output`; every client
// process records the arrival of each `change` event by revision; the coordinator matches
// revisions to send times (agent → registry delta → client mirror).
//
// Markdown on stdout, progress on stderr. Needs `npm run build` first.
import { cpus } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import { CATALOG_BUCKET, CATALOG_WILDCARD, SUBJECT_PREFIX } from "roster-schemas";
import { NatsServer, freePort, waitFor } from "roster-testkit";
import { closeHttp, getJson } from "./lib/http.mjs";
import { progress } from "./lib/log.mjs";
import { commandLine, numberOption } from "./lib/options.mjs";
import { ProcSampler, cpuSeconds, rssMiB } from "./lib/procstat.mjs";
import { startRegistry } from "./lib/registry.mjs";
import { forkHelper } from "./lib/fork-helper.mjs";
import { startXdsLoad } from "./lib/xds-load.mjs";
import { defer, runBench } from "./lib/run.mjs";
import { fmt, percentile, summarize } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";

const AGENT = fileURLToPath(new URL("./lib/fanout-agent.mjs", import.meta.url));
const WATCHERS = fileURLToPath(new URL("./lib/index-watchers.mjs", import.meta.url));
const CLIENTS = fileURLToPath(new URL("./lib/fanout-clients.mjs", import.meta.url));

const quick = Boolean(process.env.BENCH_QUICK) || process.argv.includes("--quick");
const clients = numberOption("clients", quick ? 200 : 1000);
const procs = Math.max(1, Math.min(numberOption("procs", 4), clients));
const services = Math.max(1, numberOption("services", 50));
const replicas = Math.max(1, numberOption("replicas", 10));
const concurrency = Math.max(1, numberOption("concurrency", 50));
const steadySeconds = numberOption("steady-seconds", quick ? 3 : 5);
const rate = Math.max(0.1, numberOption("rate", 10));
const flipSeconds = numberOption("flip-seconds", quick ? 10 : 30);
// Clients (in all) whose NATS connection is forced to reconnect during the flips (0: none): a
// reconnecting client loses the deltas published meanwhile and must heal by resyncing.
const reconnectCount = numberOption("reconnects", 0);
const flipServices = Math.max(1, Math.min(services, numberOption("flip-services", services)));
const clientServices = Math.max(1, Math.min(services, numberOption("client-services", services)));
const watchers = numberOption("watchers", 0);
// --xds-streams: N xDS (ADS) streams on svc-000 held by --xds-procs load processes (bench/lib/xds-load.mjs)
// during the flips: the flip → last-stream time is one more leg beside the gateway clients'.
const xdsStreams = numberOption("xds-streams", 0);
const xdsProcs = Math.max(1, numberOption("xds-procs", 4));
const httpRate = Math.max(0.1, numberOption("http-rate", 5));
const httpSeconds = numberOption("http-seconds", quick ? 10 : 40);
const instances = replicas * services;
const hiresNow = () => performance.timeOrigin + performance.now();

const maxSeconds = 240 + flipSeconds + clients / 4 + instances / 500 + (watchers > 0 ? httpSeconds + 60 : 0);

await runBench("gateway-fanout", maxSeconds, async () => {
  progress(`gateway-fanout: ${clients} clients in ${procs} processes x ${services} services; ${replicas} hosts x ${services} services = ${instances} instances; ${rate} flips/s for ${flipSeconds}s`);

  const monitorPort = await freePort();
  const nats = await NatsServer.start({ args: ["-m", String(monitorPort)] });
  defer(() => nats.close());
  const varz = async () => (await getJson(`http://127.0.0.1:${monitorPort}/varz`, { timeoutMs: 5000 })).body;
  progress(`nats-server on ${nats.url} (pid ${nats.pid}, monitor :${monitorPort})`);

  const xdsPort = xdsStreams > 0 ? await freePort() : 0;
  const registry = await startRegistry({ natsUrl: nats.url, ...(xdsStreams > 0 ? { env: { ROSTER_XDS: `127.0.0.1:${xdsPort}` } } : {}) });
  defer(() => registry.stop());
  progress(`registry pid ${registry.pid} on ${registry.httpUrl}`);

  // Observer: when the registry published each delta, and the send time it carries.
  const obs = await connect({ servers: nats.url, name: "fanout-observer" });
  defer(() => obs.drain().catch(() => {}));
  const lastRevision = new Map(); // service → last delta revision
  const deltaKeys = new Set();
  /** revision → { service, sentAt, seenAt } for deltas that carry a flip's send time */
  const flips = new Map();
  const decoder = new TextDecoder();
  obs.subscribe(CATALOG_WILDCARD, {
    callback: (_err, m) => {
      const seenAt = hiresNow();
      let d;
      try {
        d = JSON.parse(decoder.decode(m.data));
      } catch {
        return;
      }
      deltaKeys.add(`${d.service}.${d.instanceId}`);
      if ((lastRevision.get(d.service) ?? 0) < d.revision) lastRevision.set(d.service, d.revision);
      const out = d.instance?.checks?.[0]?.output;
      const hit = typeof out === "string" ? /^sentAt=([\d.]+)$/.exec(out) : null;
      if (hit && !flips.has(d.revision)) flips.set(d.revision, { service: d.service, key: out, sentAt: Number(hit[1]), seenAt });
    },
  });
  // Taps on the legs before the delta, keyed by the flip's `output` string: the health message
  // as the agent sent it, and the registry's KV write of the new record as it left the registry.
  const healthSeen = new Map();
  const kvSeen = new Map();
  const tap = (subject, outputOf, into) =>
    obs.subscribe(subject, {
      callback: (_err, m) => {
        const at = hiresNow();
        try {
          const out = outputOf(JSON.parse(decoder.decode(m.data)));
          if (typeof out === "string" && out.startsWith("sentAt=") && !into.has(out)) into.set(out, at);
        } catch {
          // not JSON (a KV delete marker has no body): not a flip
        }
      },
    });
  tap(`${SUBJECT_PREFIX}.agent.*.health`, (h) => h.check?.output, healthSeen);
  tap(`$KV.${CATALOG_BUCKET}.>`, (r) => r.checks?.[0]?.output, kvSeen);
  await obs.flush();

  const regSampler = new ProcSampler(registry.pid);
  const natsSampler = new ProcSampler(nats.pid);
  defer(() => {
    regSampler.stop();
    natsSampler.stop();
  });

  // The fleet.
  const agent = forkHelper(AGENT, [`--nats=${nats.url}`, `--hosts=${replicas}`, `--services=${services}`, `--flip-services=${flipServices}`], "fanout-agent");
  defer(() => agent.stop({ cmd: "stop" }));
  await agent.next("ready", 15_000, { seen: true });
  agent.send({ cmd: "register" });
  const reg0 = performance.now();
  await waitFor(() => deltaKeys.size >= instances, { timeoutMs: 60_000 + instances * 5, intervalMs: 50, what: `a delta for each of ${instances} instances` });
  const registerMs = performance.now() - reg0;
  progress(`fleet registered: ${deltaKeys.size} instances in ${lastRevision.size} services in ${fmt(registerMs, 0)} ms`);

  // Client processes.
  const clientProcs = [];
  for (let i = 0; i < procs; i++) {
    const n = Math.floor(clients / procs) + (i < clients % procs ? 1 : 0);
    const h = forkHelper(CLIENTS, [`--nats=${nats.url}`, `--clients=${n}`, `--services=${clientServices}`, `--concurrency=${concurrency}`, `--index=${i}`], `clients-${i}`);
    h.count = n;
    clientProcs.push(h);
  }
  defer(async () => {
    progress("closing client processes");
    await Promise.all(clientProcs.map((h) => h.stop({ cmd: "close" })));
  });
  const readyMsgs = await Promise.all(clientProcs.map((h) => h.next("ready", 30_000, { seen: true })));
  const clientSamplers = clientProcs.map((h) => new ProcSampler(h.child.pid));
  defer(() => clientSamplers.forEach((s) => s.stop()));

  // Phase 1: create every gateway, until every mirror holds a snapshot of every service.
  const sync0 = { reg: cpuSeconds(registry.pid), nats: cpuSeconds(nats.pid), clients: clientProcs.map((h) => cpuSeconds(h.child.pid)), t: hiresNow() };
  const regServedBefore = await registryCounter(registry.httpUrl);
  const regExpiredBefore = await registryCounter(registry.httpUrl, "expired");
  for (const h of clientProcs) h.send({ cmd: "create" });
  const progressTimer = setInterval(() => {
    const created = clientProcs.reduce((a, h) => a + (h.last.progress?.created ?? 0), 0);
    const ready = clientProcs.reduce((a, h) => a + (h.last.progress?.ready ?? 0), 0);
    const st = agent.last.stats;
    progress(`sync: ${created}/${clients} gateways created, ${ready}/${clients * clientServices} mirrors ready, registry cpu ${fmt(regSampler.samples.at(-1)?.cpuPct)}%${st ? `; agents: ${st.registers} registers, resyncs ${JSON.stringify(st.resyncReasons)}, ${st.lateTicks ?? 0} late beats` : ""}`);
  }, 2000);
  let syncedMsgs;
  try {
    syncedMsgs = await Promise.all(clientProcs.map((h) => h.next("synced", 60_000 + clients * 200)));
  } finally {
    clearInterval(progressTimer);
  }
  const syncEnd = Math.max(...syncedMsgs.map((m) => m.at));
  const syncMs = syncEnd - sync0.t;
  const sync1 = { reg: cpuSeconds(registry.pid), nats: cpuSeconds(nats.pid), clients: clientProcs.map((h) => cpuSeconds(h.child.pid)), t: hiresNow() };
  const regServedAfter = await registryCounter(registry.httpUrl);
  const regExpiredAfter = await registryCounter(registry.httpUrl, "expired");
  // Page requests and answers over the sync only (the end-of-run totals include the flips' resyncs).
  const syncClientStats = clientProcs.reduce((a, h) => ({ requests: a.requests + (h.last.synced?.snapshotRequests ?? NaN), failures: a.failures + (h.last.synced?.snapshotFailures ?? NaN) }), { requests: 0, failures: 0 });
  progress(`all ${clients} x ${clientServices} mirrors synced in ${fmt(syncMs, 0)} ms`);

  // Phase 2: steady state with every connection and subscription in place.
  progress(`steady state: ${steadySeconds}s`);
  regSampler.mark();
  natsSampler.mark();
  clientSamplers.forEach((s) => s.mark());
  const steady0 = { reg: cpuSeconds(registry.pid), nats: cpuSeconds(nats.pid), t: performance.now() };
  await sleep(steadySeconds * 1000);
  const steady1 = { reg: cpuSeconds(registry.pid), nats: cpuSeconds(nats.pid), t: performance.now() };
  const steadyVarz = await varz();
  const steadyNatsRss = rssMiB(nats.pid);
  const steadyClientRss = clientProcs.map((h) => rssMiB(h.child.pid));
  const steadyS = (steady1.t - steady0.t) / 1000;
  progress(`nats-server: ${steadyVarz.connections} connections, ${steadyVarz.subscriptions} subscriptions, rss ${fmt(steadyNatsRss)} MiB`);

  let xdsLoad = null;
  if (xdsStreams > 0) {
    const load = await startXdsLoad({ natsUrl: nats.url, flipService: "svc-000", procs: xdsProcs });
    xdsLoad = load;
    defer(() => load.stop());
    await load.open({ tag: "fanout", port: xdsPort, n: xdsStreams, names: ["svc-000"], minEndpoints: replicas });
    progress(`${xdsStreams} xDS streams over ${load.procs} load processes hold svc-000`);
  }

  // Phase 3: propagation of health flips.
  const truthBefore = new Map(lastRevision);
  for (const h of clientProcs) h.send({ cmd: "record" });
  await sleep(200);
  regSampler.mark();
  natsSampler.mark();
  clientSamplers.forEach((s) => s.mark());
  const flip0 = { reg: cpuSeconds(registry.pid), nats: cpuSeconds(nats.pid), clients: clientProcs.map((h) => cpuSeconds(h.child.pid)), t: performance.now() };
  const flipsBefore = flips.size;
  progress(`flipping health: ${rate}/s for ${flipSeconds}s`);
  agent.send({ cmd: "flip", rate, seconds: flipSeconds });
  if (reconnectCount > 0) {
    clientProcs.forEach((h, i) => {
      const n = Math.floor(reconnectCount / procs) + (i < reconnectCount % procs ? 1 : 0);
      h.send({ cmd: "reconnect", count: n, overMs: flipSeconds * 800 });
    });
  }
  const flipTimer = setInterval(() => {
    progress(`  flips published by the registry: ${flips.size - flipsBefore}, registry cpu ${fmt(regSampler.samples.at(-1)?.cpuPct)}%, nats cpu ${fmt(natsSampler.samples.at(-1)?.cpuPct)}%, clients cpu ${clientSamplers.map((s) => fmt(s.samples.at(-1)?.cpuPct, 0)).join("/")}%`);
  }, 5000);
  let flipped;
  try {
    flipped = await agent.next("flipped", (flipSeconds + 60) * 1000);
  } finally {
    clearInterval(flipTimer);
  }
  const flip1 = { reg: cpuSeconds(registry.pid), nats: cpuSeconds(nats.pid), clients: clientProcs.map((h) => cpuSeconds(h.child.pid)), t: performance.now() };
  const flipWindow = { reg: regSampler.window(), nats: natsSampler.window(), clients: clientSamplers.map((s) => s.window()) };
  // Let the last deltas arrive (and any resync finish) before asking for the reports.
  const expectedFlips = flipped.sent;
  await waitFor(() => flips.size - flipsBefore >= expectedFlips, { timeoutMs: 10_000, intervalMs: 50, what: "a delta for every flip" }).catch((e) => progress(e.message));
  await sleep(3000);
  const reports = await Promise.all(
    clientProcs.map((h) => {
      const p = h.next("report", 60_000);
      h.send({ cmd: "report" });
      return p;
    }),
  );
  progress(`reports in from ${reports.length} client processes`);
  // xDS: a stream has flip R once it got an EDS response of version (catalog revision) >= R.
  const xdsAll = [];
  if (xdsLoad) {
    const streams = await xdsLoad.report("fanout");
    for (const [rev, f] of flips.entries()) {
      if (f.service !== "svc-000" || rev <= (truthBefore.get("svc-000") ?? 0)) continue;
      let last = -Infinity;
      let all = true;
      for (const seenList of streams) {
        const hit = seenList.find(([v]) => v >= rev);
        if (!hit) all = false;
        else last = Math.max(last, hit[1]);
      }
      if (all) xdsAll.push(last - f.sentAt);
    }
  }

  // Matching: every flip's revision against every client's change events.
  const flipRevs = [...flips.entries()].filter(([rev, f]) => rev > (truthBefore.get(f.service) ?? 0));
  const all = [];
  const toDelta = [];
  const deltaToClient = [];
  let seen = 0;
  for (const [, f] of flipRevs) toDelta.push(f.seenAt - f.sentAt);
  const flipByRev = new Map(flipRevs);
  const toHealth = [];
  const toKv = [];
  // Per transition, not a difference of medians: the gap between the KV write and its delta.
  const kvToDelta = [];
  for (const [, f] of flipRevs) {
    if (healthSeen.has(f.key)) toHealth.push(healthSeen.get(f.key) - f.sentAt);
    if (kvSeen.has(f.key)) {
      toKv.push(kvSeen.get(f.key) - f.sentAt);
      kvToDelta.push(f.seenAt - kvSeen.get(f.key));
    }
  }
  let unmatchedEvents = 0;
  /** revision → { n, last } over every client of every process: when the LAST client reflected it. */
  const perRev = new Map();
  const firstInProc = [];
  const spreadInProc = [];
  for (const r of reports) {
    for (const [revStr, ts] of Object.entries(r.times)) {
      const f = flipByRev.get(Number(revStr));
      if (!f) {
        unmatchedEvents += ts.length;
        continue;
      }
      const first = Math.min(...ts);
      const pr = perRev.get(Number(revStr)) ?? { n: 0, last: -Infinity };
      pr.n += ts.length;
      pr.last = Math.max(pr.last, ...ts);
      perRev.set(Number(revStr), pr);
      firstInProc.push(first - f.sentAt);
      spreadInProc.push(Math.max(...ts) - first);
      for (const t of ts) {
        all.push(t - f.sentAt);
        deltaToClient.push(t - f.seenAt);
        seen++;
      }
    }
  }
  const totalClients = reports.reduce((a, r) => a + r.clients, 0);
  // Per transition: until every client's mirror reflected it (only those every client saw).
  const allClients = [];
  let notEveryClient = 0;
  for (const [rev, f] of flipRevs) {
    const pr = perRev.get(rev);
    if (pr && pr.n >= totalClients) allClients.push(pr.last - f.sentAt);
    else notEveryClient++;
  }
  const expected = flipRevs.length * totalClients;
  // Convergence: every client's last revision of every service equals the registry's last delta.
  let converged = 0;
  let notConverged = 0;
  for (const r of reports) {
    for (const [svc, m] of Object.entries(r.revisions)) {
      const truth = lastRevision.get(svc) ?? 0;
      for (const [rev, n] of Object.entries(m)) {
        if (Number(rev) === truth) converged += n;
        else notConverged += n;
      }
    }
  }
  const mstats = { snapshots: 0, snapshotFailures: 0, snapshotPages: 0, resyncs: 0, gaps: 0, deltasApplied: 0, duplicates: 0, dropped: {}, stale: 0, reconnects: 0, reconnectFailures: 0, windowDeltas: 0, windowSnapshots: 0 };
  for (const r of reports) {
    for (const k of ["snapshots", "snapshotFailures", "snapshotRequests", "snapshotRestarts", "snapshotPages", "resyncs", "gaps", "deltasApplied", "duplicates"]) mstats[k] = (mstats[k] ?? 0) + (r.stats[k] ?? 0);
    for (const [k, v] of Object.entries(r.stats.dropped)) mstats.dropped[k] = (mstats.dropped[k] ?? 0) + v;
    mstats.stale += r.stale;
    mstats.reconnects += r.reconnects.done;
    mstats.reconnectFailures += r.reconnects.failed;
    mstats.windowDeltas += r.window.deltasApplied;
    mstats.windowSnapshots += r.window.snapshots;
  }

  const lat = latencyRow(all);
  const lat1 = latencyRow(toDelta);
  const lat2 = latencyRow(deltaToClient);
  const cpuPct = (a, b, s) => (a === null || b === null ? NaN : ((b - a) / s) * 100);
  const syncS = (sync1.t - sync0.t) / 1000;
  const flipS = (flip1.t - flip0.t) / 1000;
  const clientCpuSync = sync1.clients.reduce((acc, v, i) => acc + (v - sync0.clients[i]), 0);
  const clientCpuFlip = flip1.clients.reduce((acc, v, i) => acc + (v - flip0.clients[i]), 0);
  const perClientRss = clientProcs.map((h, i) => ((steadyClientRss[i] ?? NaN) - readyMsgs[i].rssMiB) / h.count);
  const served = regServedAfter !== null && regServedBefore !== null ? regServedAfter - regServedBefore : NaN;
  const flipNats = summarize(flipWindow.nats.map((s) => s.cpuPct));
  const flipReg = summarize(flipWindow.reg.map((s) => s.cpuPct));
  const flipClients = summarize(sumSeries(flipWindow.clients.map((w) => w.map((s) => s.cpuPct))));

  // HTTP blocking-query watchers on svc-000, in a phase of their own.
  let http = null;
  if (watchers > 0) {
    const w = forkHelper(WATCHERS, [`--url=${registry.httpUrl}/v1/services/svc-000/instances`, `--count=${watchers}`, "--wait=30s"], "index-watchers");
    defer(() => w.stop({ cmd: "close" }));
    await w.next("ready", 15_000, { seen: true });
    w.send({ cmd: "start" });
    await w.next("started", 60_000);
    await sleep(500);
    const revBefore = lastRevision.get("svc-000") ?? 0;
    const n0 = flips.size;
    const cpu0 = cpuSeconds(registry.pid);
    const t0 = performance.now();
    progress(`HTTP phase: ${watchers} blocking-query watchers on svc-000, flips ${httpRate}/s for ${httpSeconds}s`);
    agent.send({ cmd: "flip", rate: httpRate, seconds: httpSeconds });
    const fl = await agent.next("flipped", (httpSeconds + 60) * 1000);
    const cpuPct = ((cpuSeconds(registry.pid) - cpu0) / ((performance.now() - t0) / 1000)) * 100;
    await waitFor(() => flips.size - n0 >= fl.sent, { timeoutMs: 10_000, intervalMs: 50, what: "a delta for every HTTP-phase flip" }).catch((e) => progress(e.message));
    await sleep(2000);
    const rp = w.next("report", 30_000);
    w.send({ cmd: "report" });
    const rep = await rp;
    const hf = [...flips.entries()].filter(([rev, f]) => f.service === "svc-000" && rev > revBefore).sort((a, b) => a[0] - b[0]);
    const each = [];
    const everyWatcher = [];
    let missing = 0;
    const lastPerFlip = hf.map(() => -Infinity);
    const seenPerFlip = hf.map(() => 0);
    for (const arr of rep.arrivals) {
      let j = 0;
      for (let i = 0; i < hf.length; i++) {
        const [rev, f] = hf[i];
        while (j < arr.length && arr[j][0] < rev) j++;
        if (j >= arr.length) {
          missing++;
          continue;
        }
        const dt = arr[j][1] - f.sentAt;
        each.push(dt);
        seenPerFlip[i]++;
        lastPerFlip[i] = Math.max(lastPerFlip[i], arr[j][1]);
      }
    }
    hf.forEach(([, f], i) => {
      if (seenPerFlip[i] === watchers) everyWatcher.push(lastPerFlip[i] - f.sentAt);
    });
    const answers = rep.arrivals.reduce((a, x) => a + x.length, 0);
    http = { watchers, flips: hf.length, sent: fl.sent, each, everyWatcher, missing, answers, errors: rep.errors, cpuPct, instancesPerAnswer: replicas };
    progress(`HTTP phase: ${hf.length} flips, per watcher p99 ${fmt(percentile(each, 99), 1)} ms, every watcher p99 ${fmt(percentile(everyWatcher, 99), 1)} ms`);
  }

  const summ = (xs) => {
    const s = summarize(xs);
    return { n: s.n, p50: s.p50, p99: s.p99, max: s.max };
  };
  const figures = {
    instances,
    registerMs,
    clients: totalClients,
    syncMs,
    propagation: { everyClient: summ(allClients), perDelivery: summ(all), toDelta: summ(toDelta), flips: flipRevs.length, missing: expected - seen, notEveryClient },
    ...(xdsLoad ? { xds: { streams: xdsStreams, loadProcs: xdsLoad.procs, everyStream: summ(xdsAll) } } : {}),
    http: http && { watchers: http.watchers, flips: http.flips, everyWatcher: summ(http.everyWatcher), perAnswer: summ(http.each), missing: http.missing, registryCpuPct: http.cpuPct },
  };

  printReport({
    figures,
    title: `Catalog fan-out: ${totalClients} gateway clients x ${clientServices} services (of ${services}), ${instances} instances`,
    command: commandLine("bench/gateway-fanout.mjs"),
    params: {
      clients: totalClients,
      clientProcesses: procs,
      services,
      instancesPerService: replicas,
      instances,
      createConcurrencyPerProcess: concurrency,
      flipsPerSecond: rate,
      flipServices,
      clientServices,
      watchers,
      fleetRegisteredMs: Math.round(registerMs),
      flipSeconds,
      steadySeconds,
      forcedReconnects: reconnectCount,
    },
    tables: [
      {
        caption: `Sync: every gateway created (${concurrency} createGateway in flight per process) until every client holds a snapshot of every service`,
        headers: ["measure", "value"],
        rows: [
          [`time until all ${totalClients} x ${clientServices} mirrors synced (from the first createGateway)`, `${fmt(syncMs, 0)} ms`],
          ["snapshot requests answered by the registry (its counter)", Number.isNaN(served) ? "n/a" : served],
          ["snapshots received / failed requests (timeouts, retried) in the clients", `${mstats.snapshots} / ${mstats.snapshotFailures}`],
          ["page requests sent by the clients / failed (timed out) over the sync", `${syncClientStats.requests} / ${syncClientStats.failures}`],
          ["wasted answers: answered by the registry − answers a client was still waiting for", Number.isNaN(served) || Number.isNaN(syncClientStats.requests) ? "n/a" : Math.max(0, served - (syncClientStats.requests - syncClientStats.failures))],
          ["snapshot requests the registry skipped (deadline passed)", regExpiredBefore === null || regExpiredAfter === null ? "n/a" : regExpiredAfter - regExpiredBefore],
          ["registry CPU over the sync", `${fmt((sync1.reg - sync0.reg) * 1000, 0)} ms (${fmt(cpuPct(sync0.reg, sync1.reg, syncS), 0)}% of a core)`],
          ["registry CPU per snapshot answered", Number.isNaN(served) || served === 0 ? "n/a" : `${fmt(((sync1.reg - sync0.reg) * 1e6) / served, 0)} µs`],
          ["nats-server CPU over the sync", `${fmt((sync1.nats - sync0.nats) * 1000, 0)} ms (${fmt(cpuPct(sync0.nats, sync1.nats, syncS), 0)}% of a core)`],
          [`client processes' CPU over the sync (${procs}, summed)`, `${fmt(clientCpuSync * 1000, 0)} ms (${fmt((clientCpuSync / syncS) * 100, 0)}% of a core)`],
        ],
      },
      {
        caption: `Steady state (${fmt(steadyS, 1)} s, every client connected and subscribed, heartbeats only)`,
        headers: ["measure", "value"],
        rows: [
          ["nats-server connections / subscriptions (/varz)", `${steadyVarz.connections} / ${steadyVarz.subscriptions}`],
          ["nats-server RSS", `${fmt(steadyNatsRss)} MiB`],
          ["nats-server CPU", `${fmt(cpuPct(steady0.nats, steady1.nats, steadyS))}% of a core`],
          ["registry CPU", `${fmt(cpuPct(steady0.reg, steady1.reg, steadyS))}% of a core`],
          ["client process RSS (each, before → after its gateways)", clientProcs.map((h, i) => `${fmt(readyMsgs[i].rssMiB, 0)} → ${fmt(steadyClientRss[i], 0)} MiB`).join(", ")],
          ["client RSS per gateway client (median over processes)", `${fmt(percentile(perClientRss, 50), 2)} MiB`],
          ["client V8 heap used per process after sync", syncedMsgs.map((m) => `${fmt(m.heapUsedMiB, 0)} MiB`).join(", ")],
        ],
      },
      {
        caption: `Propagation: ${flipRevs.length} health transitions (${rate}/s for ${flipSeconds} s, random instance, passing ↔ critical) to ${totalClients} clients`,
        headers: ["leg", "n", "min (ms)", "p50 (ms)", "p99 (ms)", "p99.9 (ms)", "max (ms)"],
        rows: [
          [`per transition: agent publish → the LAST of the ${totalClients} clients' mirrors reflects it`, ...latencyRow(allClients)],
          ...(xdsLoad ? [[`per transition of svc-000: agent publish → the LAST of ${xdsStreams} xDS (ADS) streams (${xdsLoad.procs} load processes) has it`, ...latencyRow(xdsAll)]] : []),
          ["agent publish → client mirror `change` (every client x transition)", ...lat],
          ["agent publish → first client of each process `change`", ...latencyRow(firstInProc)],
          ["spread within a process: its first → its last client `change`", ...latencyRow(spreadInProc)],
          ["agent publish → health message seen by the observer (NATS hop)", ...latencyRow(toHealth)],
          ["agent publish → registry's KV write seen by the observer", ...latencyRow(toKv)],
          ["agent publish → registry delta seen by the observer", ...lat1],
          ["registry's KV write → its delta, per transition (both seen by the observer)", ...latencyRow(kvToDelta)],
          ["registry delta seen by the observer → client `change`", ...lat2],
        ],
      },
      {
        caption: "Delivery",
        headers: ["measure", "value"],
        rows: [
          ["health messages sent by the agent (late ticks)", `${flipped.sent} (${flipped.lateTicks})`],
          ["catalog deltas carrying a flip seen by the observer", flipRevs.length],
          ["deliveries expected (transitions x clients)", expected],
          ["deliveries seen (a `change` at that exact revision, by delta or by a resync's snapshot)", seen],
          ["missing", expected - seen],
          ["deltas applied by the mirrors while recording (a delivery by delta) / snapshots taken", `${mstats.windowDeltas} / ${mstats.windowSnapshots}`],
          ["forced NATS reconnects of clients during the flips (failed)", `${mstats.reconnects} (${mstats.reconnectFailures})`],
          [`(client, service) mirrors at the registry's last revision at the end`, `${converged} of ${converged + notConverged}`],
          ["mirror gaps / resyncs after the initial sync / duplicates / dropped", `${mstats.gaps} / ${mstats.resyncs - totalClients * clientServices} / ${mstats.duplicates} / ${JSON.stringify(mstats.dropped)}`],
          ["clients stale at the end", mstats.stale],
          ["`change` events at other revisions while recording", unmatchedEvents],
          ["nats-server CPU during flips (median / max of 1 s samples)", `${fmt(flipNats.p50)} / ${fmt(flipNats.max)}% of a core`],
          ["registry CPU during flips (median / max)", `${fmt(flipReg.p50)} / ${fmt(flipReg.max)}%`],
          [`client processes' CPU during flips (${procs}, summed: median / max; mean over the window)`, `${fmt(flipClients.p50)} / ${fmt(flipClients.max)}%; ${fmt((clientCpuFlip / flipS) * 100)}%`],
        ],
      },
      ...(http
        ? [
            {
              caption: `HTTP blocking queries: ${http.watchers} watchers (a separate process) doing GET /v1/services/svc-000/instances?index=&wait=30s, ${http.flips} transitions of svc-000 (${httpRate}/s), each answer ${http.instancesPerAnswer} instances`,
              headers: ["leg", "n", "min (ms)", "p50 (ms)", "p99 (ms)", "p99.9 (ms)", "max (ms)"],
              rows: [
                [`per transition: agent publish → the LAST of the ${http.watchers} watchers has an answer reflecting it`, ...latencyRow(http.everyWatcher)],
                ["agent publish → a watcher's answer reflecting it (every watcher x transition)", ...latencyRow(http.each)],
              ],
            },
            {
              caption: "HTTP phase",
              headers: ["measure", "value"],
              rows: [
                ["answers received (a transition may be folded into the next answer)", http.answers],
                ["(watcher, transition) pairs without an answer at or after it / request errors", `${http.missing} / ${http.errors}`],
                ["registry CPU over the phase", `${fmt(http.cpuPct, 0)} % of a core`],
              ],
            },
          ]
        : []),
    ],
    notes: [
      `Each gateway client has its own NATS connection and ${services} catalog subscriptions (+ presence and its request inbox); the clients run in ${procs} Node processes on the same ${cpus().length} cores as nats-server, the registry and the fake agents, so a delivery's latency includes queueing behind the other clients of the same process (each decodes the same delta on its own connection) and the sync is CPU-bound on client processes.`,
      "Times are wall-clock (performance.timeOrigin + performance.now()) in each process, on one machine (checked: processes agree within 0.5 ms); the send time travels in the check's `output`. The observer (this coordinator) is one more subscriber of the agent, KV and catalog subjects: its legs are cumulative from the agent's send and include its own wake-up, and the server may serve some clients before it, so the last leg can be negative.",
      "CPU is utime+stime from /proc/<pid>/stat; 100% = one full core.",
    ],
  });
  await closeHttp();
});

/** n, min, p50, p99, p99.9, max of a latency list, formatted. */
function latencyRow(values) {
  if (values.length === 0) return [0, "n/a", "n/a", "n/a", "n/a", "n/a"];
  const sorted = Float64Array.from(values).sort();
  const at = (p) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
  return [sorted.length, fmt(sorted[0], 2), fmt(at(50), 2), fmt(at(99), 2), fmt(at(99.9), 2), fmt(sorted[sorted.length - 1], 2)];
}

/** Element-wise sum of equally spaced sample series (shortest length). */
function sumSeries(series) {
  if (series.length === 0) return [];
  const n = Math.min(...series.map((s) => s.length));
  return Array.from({ length: n }, (_, i) => series.reduce((a, s) => a + s[i], 0));
}

/** The registry's count of snapshot requests served (`snapshotsServed` of /v1/status), or of drops for `dropReason`; null if absent. */
async function registryCounter(httpUrl, dropReason) {
  try {
    const r = await getJson(`${httpUrl}/v1/status`, { timeoutMs: 5000 });
    const n = dropReason ? (r.body?.drops?.byReason?.[dropReason] ?? 0) : r.body?.snapshotsServed;
    return typeof n === "number" ? n : null;
  } catch {
    return null;
  }
}
