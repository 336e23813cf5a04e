#!/usr/bin/env node
// What the gateway's request path costs: requests/s and p50/p99 through `gw.request` vs a
// raw undici Pool to the same single upstream, same load (closed loop, fixed concurrency),
// alternated rounds, medians. The upstream is a node:http server in a separate child
// process, so the client side is what differs between the two columns.
//
//   node bench/gateway-throughput.mjs [--concurrency=32] [--duration=3] [--rounds=3]
//
// Needs `npm run build` first (imports the compiled gateway-client and test kit).
import { performance } from "node:perf_hooks";
import { connect } from "@nats-io/transport-node";
import { Pool } from "undici";
import { ChildProc, NatsServer } from "@roster/testkit";
import { PRESENCE_SUBJECT, REGISTRY_QUEUE, SNAPSHOT_WILDCARD, encode, PresenceMessage, Snapshot } from "@roster/schemas";
import { createGateway } from "@roster/gateway-client";
import { numberOption, commandLine } from "./lib/options.mjs";
import { fmt, percentile } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";

const quick = Boolean(process.env.BENCH_QUICK);
const CONCURRENCY = numberOption("concurrency", 32);
const DURATION_S = numberOption("duration", quick ? 1.5 : 3);
const ROUNDS = numberOption("rounds", quick ? 2 : 3);
const WARMUP_S = 1;

/** A node:http upstream in a child process; prints {"port":N} once listening. */
export const UPSTREAM_CODE = `
const http = require("node:http");
const name = process.env.UPSTREAM_NAME || "u";
const delayMs = Number(process.env.UPSTREAM_DELAY_MS || 0);
const body = Buffer.from("ok");
const srv = http.createServer((req, res) => {
  req.resume();
  const send = () => { res.setHeader("x-upstream", name); res.setHeader("content-length", body.length); res.end(body); };
  if (delayMs > 0) setTimeout(send, delayMs); else send();
});
srv.keepAliveTimeout = 60000;
srv.listen(0, "127.0.0.1", () => console.log(JSON.stringify({ port: srv.address().port })));
process.on("SIGTERM", () => srv.close(() => process.exit(0)));
`;

export async function startUpstream(name, delayMs = 0) {
  const child = new ChildProc(process.execPath, ["-e", UPSTREAM_CODE], { env: { ...process.env, UPSTREAM_NAME: name, UPSTREAM_DELAY_MS: String(delayMs) } });
  await child.waitForOutput(/"port":\d+/, 10_000);
  const port = Number(/"port":(\d+)/.exec(child.output)[1]);
  return { child, port, name };
}

/** Answers snapshot requests for the given instances and publishes presence: a stand-in for the registry. */
export async function startCatalog(natsUrl, instances) {
  const nc = await connect({ servers: natsUrl });
  const now = Date.now();
  const full = instances.map((i) => ({ host: "bench", tags: [], meta: {}, weight: 100, status: "passing", checks: [], epoch: 1, registeredAt: now, updatedAt: now, ...i }));
  nc.subscribe(SNAPSHOT_WILDCARD, {
    queue: REGISTRY_QUEUE,
    callback: (_e, msg) => {
      const service = msg.subject.split(".").pop();
      const mine = full.filter((i) => i.service === service);
      msg.respond(encode(Snapshot, { v: 1, kind: "snapshot", service, revision: mine.length, known: mine.length > 0, instances: mine }));
    },
  });
  const beat = () => nc.publish(PRESENCE_SUBJECT, encode(PresenceMessage, { v: 1, kind: "presence", registryId: "bench", epoch: 1, sentAt: Date.now(), revision: full.length, intervalMs: 1000 }));
  beat();
  const timer = setInterval(beat, 1000);
  await nc.flush();
  return { close: async () => { clearInterval(timer); await nc.close(); } };
}

/** Closed loop: `concurrency` workers call `once()` back to back for `seconds`. */
export async function closedLoop(once, concurrency, seconds) {
  const latencies = [];
  let errors = 0;
  const end = performance.now() + seconds * 1000;
  const worker = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      try {
        await once();
        latencies.push(performance.now() - t0);
      } catch {
        errors++;
      }
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (performance.now() - t0) / 1000;
  return { rps: latencies.length / elapsed, p50: percentile(latencies, 50), p99: percentile(latencies, 99), p999: percentile(latencies, 99.9), n: latencies.length, errors, latencies };
}

export const median = (xs) => percentile(xs, 50);

async function main() {
  const nats = await NatsServer.start({ jetstream: false });
  const up = await startUpstream("single");
  const catalog = await startCatalog(nats.url, [{ id: "single", service: "bench", address: "127.0.0.1", port: up.port }]);
  const gw = await createGateway({ nats: nats.url, services: ["bench"] });
  const pool = new Pool(`http://127.0.0.1:${up.port}`, { connections: 64 });
  try {
    const viaGateway = async () => {
      const res = await gw.request("bench", { path: "/" });
      await res.body.dump();
      if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
    };
    const viaPool = async () => {
      const res = await pool.request({ path: "/", method: "GET" });
      await res.body.dump();
      if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
    };
    process.stderr.write("warm-up\n");
    await closedLoop(viaPool, CONCURRENCY, WARMUP_S);
    await closedLoop(viaGateway, CONCURRENCY, WARMUP_S);
    const results = { gateway: [], pool: [] };
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 === 0 ? ["pool", "gateway"] : ["gateway", "pool"];
      for (const which of order) {
        const res = await closedLoop(which === "pool" ? viaPool : viaGateway, CONCURRENCY, DURATION_S);
        results[which].push(res);
        process.stderr.write(`round ${r + 1} ${which}: ${res.rps.toFixed(0)} req/s p50 ${res.p50.toFixed(2)} ms p99 ${res.p99.toFixed(2)} ms errors ${res.errors}\n`);
      }
    }
    const row = (label, rs) => [label, fmt(median(rs.map((x) => x.rps)), 0), fmt(median(rs.map((x) => x.p50)), 2), fmt(median(rs.map((x) => x.p99)), 2), String(rs.reduce((s, x) => s + x.errors, 0))];
    const g = median(results.gateway.map((x) => x.rps));
    const p = median(results.pool.map((x) => x.rps));
    printReport({
      title: "Gateway request path vs raw undici Pool (one upstream in a child process)",
      command: commandLine("bench/gateway-throughput.mjs"),
      params: { concurrency: CONCURRENCY, duration: `${DURATION_S}s`, rounds: ROUNDS, alternated: "yes" },
      tables: [
        {
          caption: "Medians over rounds",
          headers: ["client", "requests/s", "p50 ms", "p99 ms", "errors"],
          rows: [row("raw undici Pool", results.pool), row("gw.request (p2c-peak-ewma)", results.gateway)],
        },
      ],
      notes: [
        `gw.request throughput is ${fmt((g / p) * 100, 0)} % of the raw Pool's on the same upstream.`,
        "Client, upstream and nats-server share the machine's 2 cores; figures compare the two clients under identical load, not absolute capacity.",
      ],
    });
  } finally {
    await gw.close();
    await pool.close();
    await catalog.close();
    await up.child.stop(5000);
    await nats.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err) => {
    process.stderr.write(`${err?.stack ?? err}\n`);
    process.exit(1);
  });
}
