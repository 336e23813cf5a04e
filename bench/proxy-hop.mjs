#!/usr/bin/env node
// Proxy hop: the same 3 upstream instances called (a) through the gateway client, in the
// caller's process (no hop), (b) through nginx (a reverse-proxy hop, `upstream` block with
// keepalive, one worker), and (c) straight to ONE instance with a raw undici Pool (the floor:
// no balancing, no hop). Closed loop at a fixed concurrency; the load runs in a separate
// process (bench/lib/load-worker.mjs), one per variant, never in the process under test.
// Rounds alternate the variants; the table gives each variant's median over the rounds and
// the ratios measured within this run.
//
//   node bench/proxy-hop.mjs [--quick] [--concurrency=32] [--seconds=3] [--rounds=5]
//
// The catalog is a stand-in registry (snapshots + presence over NATS, as in
// gateway-throughput): the request path is what differs, not the discovery. Needs `npm run build`.
import { fileURLToPath } from "node:url";
import { NatsServer } from "roster-testkit";
import { startCatalog, startUpstream } from "./gateway-throughput.mjs";
import { forkHelper } from "./lib/fork-helper.mjs";
import { progress } from "./lib/log.mjs";
import { startNginx } from "./lib/nginx.mjs";
import { commandLine, numberOption } from "./lib/options.mjs";
import { cpuSeconds } from "./lib/procstat.mjs";
import { defer, runBench } from "./lib/run.mjs";
import { fmt, percentile } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";

const WORKER = fileURLToPath(new URL("./lib/load-worker.mjs", import.meta.url));
const quick = process.argv.includes("--quick") || Boolean(process.env.BENCH_QUICK);
const CONCURRENCY = numberOption("concurrency", 32);
const SECONDS = numberOption("seconds", quick ? 1.5 : 3);
const ROUNDS = numberOption("rounds", quick ? 2 : 5);
const SERVICE = "hop";
const median = (xs) => percentile(xs, 50);

const VARIANTS = [
  { key: "gateway", label: "(a) gateway client, in process (3 instances, p2c-peak-ewma)" },
  { key: "nginx", label: "(b) nginx reverse proxy (3 instances, round robin, keepalive 64)" },
  { key: "direct", label: "(c) raw undici Pool to one instance (floor)" },
];

await runBench("proxy-hop", 60 + ROUNDS * VARIANTS.length * (SECONDS + 2) * 2, async () => {
  const nats = await NatsServer.start({ jetstream: false });
  defer(() => nats.close());
  const ups = [];
  defer(async () => {
    for (const u of ups) await u.child.stop(3000);
  });
  for (let i = 0; i < 3; i++) ups.push(await startUpstream(`u${i}`));
  const catalog = await startCatalog(
    nats.url,
    ups.map((u, i) => ({ id: `hop-${i}`, service: SERVICE, address: "127.0.0.1", port: u.port })),
  );
  defer(() => catalog.close());
  const nginx = await startNginx({ upstreams: ups.map((u) => u.port) });
  defer(() => nginx.stop());
  progress(`proxy-hop: upstreams ${ups.map((u) => u.port).join(",")}, nginx ${nginx.version} on ${nginx.url} (pid ${nginx.pid}); ${CONCURRENCY} in flight, ${ROUNDS} rounds x ${SECONDS}s`);

  const workers = {};
  for (const v of VARIANTS) {
    const h = forkHelper(WORKER, [], `load-${v.key}`);
    workers[v.key] = h;
    defer(() => h.stop({ cmd: "close" }));
    await h.next("ready", 15_000, { seen: true });
    const setup =
      v.key === "gateway"
        ? { cmd: "setup", mode: "gateway", nats: nats.url, service: SERVICE }
        : { cmd: "setup", mode: "url", url: v.key === "nginx" ? nginx.url : `http://127.0.0.1:${ups[0].port}`, connections: 64 };
    const done = h.next("setup-done", 30_000);
    h.send(setup);
    await done;
  }
  const runOnce = async (key, seconds) => {
    const h = workers[key];
    const p = h.next("result", (seconds + 30) * 1000);
    const upCpu0 = ups.reduce((a, u) => a + (cpuSeconds(u.child.pid) ?? 0), 0);
    h.send({ cmd: "run", seconds, concurrency: CONCURRENCY });
    const r = await p;
    r.upstreamCpuUsPerReq = r.n ? ((ups.reduce((a, u) => a + (cpuSeconds(u.child.pid) ?? 0), 0) - upCpu0) * 1e6) / r.n : NaN;
    return r;
  };
  progress("warm-up");
  for (const v of VARIANTS) await runOnce(v.key, 1);

  const results = Object.fromEntries(VARIANTS.map((v) => [v.key, []]));
  for (let r = 0; r < ROUNDS; r++) {
    // Rotate the order so no variant always runs first (or right after another's load).
    const order = VARIANTS.map((_, i) => VARIANTS[(i + r) % VARIANTS.length].key);
    for (const key of order) {
      const res = await runOnce(key, SECONDS);
      results[key].push(res);
      progress(`round ${r + 1} ${key}: ${fmt(res.rps, 0)} req/s p50 ${fmt(res.p50, 2)} ms p99 ${fmt(res.p99, 2)} ms errors ${res.errors} spread ${JSON.stringify(res.byUpstream)}`);
    }
  }
  const med = Object.fromEntries(
    VARIANTS.map((v) => {
      const rs = results[v.key];
      return [v.key, { rps: median(rs.map((x) => x.rps)), p50: median(rs.map((x) => x.p50)), p99: median(rs.map((x) => x.p99)), p999: median(rs.map((x) => x.p999)), cpu: median(rs.map((x) => x.cpuUsPerReq)), errors: rs.reduce((a, x) => a + x.errors, 0), n: rs.reduce((a, x) => a + x.n, 0), spread: rs.at(-1).byUpstream }];
    }),
  );
  const floor = med.direct;
  const rows = VARIANTS.map((v) => {
    const m = med[v.key];
    return [v.label, fmt(m.rps, 0), fmt(m.rps / floor.rps, 2), fmt(m.p50, 2), fmt(m.p50 - floor.p50, 2), fmt(m.p99, 2), fmt(m.p99 - floor.p99, 2), fmt(m.p999, 2), fmt(m.cpu, 1), m.errors, Object.entries(m.spread).map(([k, n]) => `${k}:${n}`).join(" ")];
  });
  const gwVsNginx = {
    rps: med.gateway.rps / med.nginx.rps,
    p50: med.nginx.p50 - med.gateway.p50,
    p99: med.nginx.p99 - med.gateway.p99,
  };
  printReport({
    title: "Proxy hop: gateway client vs nginx vs raw undici (3 upstreams)",
    command: commandLine("bench/proxy-hop.mjs"),
    params: { concurrency: CONCURRENCY, seconds: SECONDS, rounds: ROUNDS, nginx: nginx.version, nginxWorkers: 1, upstreamKeepalive: 64 },
    figures: { medians: med, gatewayVsNginx: gwVsNginx, rounds: results },
    tables: [
      {
        caption: `Medians over ${ROUNDS} rounds of ${SECONDS} s, ${CONCURRENCY} requests in flight (closed loop), load from a separate process per variant`,
        headers: ["variant", "req/s", "× floor", "p50 ms", "+p50 vs floor", "p99 ms", "+p99 vs floor", "p99.9 ms", "load process CPU µs/req", "errors", "answers per upstream (last round)"],
        rows,
      },
      {
        caption: "Gateway client vs nginx, same upstreams, same run",
        headers: ["measure", "value"],
        rows: [
          ["throughput, gateway ÷ nginx", `${fmt(gwVsNginx.rps, 2)}×`],
          ["p50 saved by not hopping (nginx − gateway)", `${fmt(gwVsNginx.p50, 2)} ms`],
          ["p99 saved by not hopping (nginx − gateway)", `${fmt(gwVsNginx.p99, 2)} ms`],
        ],
      },
    ],
    notes: [
      "Upstreams: 3 node:http processes answering 2 bytes. nginx: Debian's package, 1 worker, `upstream` with `keepalive 64`, HTTP/1.1 to the upstreams, access log off. The gateway client and the floor's Pool use the gateway's pool defaults (64 connections per endpoint, keep-alive 4 s).",
      "The load processes do the client work: in (a) that includes the gateway's balancing and bookkeeping, in (b) and (c) only a Pool; nginx's CPU (1 worker) is a process of its own. Every process shares the same 2 cores, so a hop costs CPU that the callers would otherwise have: the throughput ratio is what the machine as a whole achieves, not a per-process limit.",
      "Figures are medians of the per-round values, and the ratios compare variants of the same run (the machine is shared with other work: absolute figures are noisy).",
    ],
  });
});
