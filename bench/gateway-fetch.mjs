#!/usr/bin/env node
// What fetch through the gateway's dispatcher costs against fetch with a plain undici Agent to
// the same instance, and what tracing costs on gw.request: off, with @opentelemetry/api
// installed but no provider registered, and with a recording provider (BasicTracerProvider,
// spans dropped by a no-op processor). A raw undici Pool is the reference. One upstream in a
// child process; closed loop, fixed concurrency, clients alternated per round, medians.
//
// `--old=<index.js of another build>` adds fetch through that build's dispatcher (and its
// gw.request) to the same rounds: before / after in one run.
//
//   node bench/gateway-fetch.mjs [--concurrency=32] [--duration=2] [--rounds=5] [--old=<path>]
//
// Needs `npm run build` first.
import { Agent, Pool, fetch as undiciFetch } from "undici";
import { NatsServer } from "roster-testkit";
import { createGateway, parsePolicy } from "roster-gateway-client";
import { BasicTracerProvider, NoopSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { numberOption, stringOption, commandLine } from "./lib/options.mjs";
import { fmt } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";
import { gatewayPoolOptions } from "./lib/request-path.mjs";
import { alternatedRounds, median, startCatalog, startUpstream } from "./gateway-throughput.mjs";

const quick = Boolean(process.env.BENCH_QUICK) || process.argv.includes("--quick");
const CONCURRENCY = numberOption("concurrency", 32);
const DURATION_S = numberOption("duration", quick ? 1.5 : 2);
const ROUNDS = numberOption("rounds", quick ? 3 : 5);
const OLD = stringOption("old", "");

async function main() {
  const nats = await NatsServer.start({ jetstream: false });
  const up = await startUpstream("single");
  const catalog = await startCatalog(nats.url, [{ id: "single", service: "bench", address: "127.0.0.1", port: up.port }]);
  const poolOpts = gatewayPoolOptions(parsePolicy);
  const pool = new Pool(`http://127.0.0.1:${up.port}`, poolOpts);
  const agent = new Agent(poolOpts);
  const gwOff = await createGateway({ nats: nats.url, services: ["bench"], tracing: false });
  const gwNoProvider = await createGateway({ nats: nats.url, services: ["bench"] });
  const provider = new BasicTracerProvider({ spanProcessors: [new NoopSpanProcessor()] });
  const gwTraced = await createGateway({ nats: nats.url, services: ["bench"], tracing: { tracerProvider: provider } });
  const gwOld = OLD ? await (await import(new URL(OLD, `file://${process.cwd()}/`).href)).createGateway({ nats: nats.url, services: ["bench"], tracing: false }) : undefined;
  const ok = (status) => {
    if (status !== 200) throw new Error(`status ${status}`);
  };
  const viaGw = (gw) => async () => {
    const res = await gw.request("bench", { path: "/" });
    await res.body.dump();
    ok(res.statusCode);
  };
  const clients = {
    "raw undici Pool": async () => {
      const res = await pool.request({ path: "/", method: "GET" });
      await res.body.dump();
      ok(res.statusCode);
    },
    "fetch + undici Agent": async () => {
      const res = await undiciFetch(`http://127.0.0.1:${up.port}/`, { dispatcher: agent });
      await res.arrayBuffer();
      ok(res.status);
    },
    "fetch + gw.dispatcher": async () => {
      const res = await undiciFetch("http://bench/", { dispatcher: gwOff.dispatcher });
      await res.arrayBuffer();
      ok(res.status);
    },
    ...(gwOld
      ? {
          "fetch + gw.dispatcher, --old build": async () => {
            const res = await undiciFetch("http://bench/", { dispatcher: gwOld.dispatcher });
            await res.arrayBuffer();
            ok(res.status);
          },
          "gw.request, tracing off, --old build": viaGw(gwOld),
        }
      : {}),
    "gw.request, tracing off": viaGw(gwOff),
    "gw.request, OTel API, no provider": viaGw(gwNoProvider),
    "gw.request, OTel provider recording": viaGw(gwTraced),
  };
  const names = Object.keys(clients);
  try {
    const results = await alternatedRounds(clients, { rounds: ROUNDS, concurrency: CONCURRENCY, seconds: DURATION_S });
    const med = (n, f) => median(results[n].map(f));
    const rawRps = med("raw undici Pool", (x) => x.rps);
    const row = (n) => [n, fmt(med(n, (x) => x.rps), 0), `${fmt((med(n, (x) => x.rps) / rawRps) * 100, 1)} %`, fmt(med(n, (x) => x.p50), 2), fmt(med(n, (x) => x.p99), 2), fmt(med(n, (x) => x.cpuUsPerReq), 1), String(results[n].reduce((s, x) => s + x.errors, 0))];
    printReport({
      title: "fetch through the gateway's dispatcher vs a plain undici Agent; tracing off / API without provider / recording",
      command: commandLine("bench/gateway-fetch.mjs"),
      params: { concurrency: CONCURRENCY, duration: `${DURATION_S}s`, rounds: ROUNDS, alternated: "yes", old: OLD || "—" },
      tables: [
        {
          caption: "Medians over rounds",
          headers: ["client", "requests/s", "vs raw Pool", "p50 ms", "p99 ms", "client CPU µs/req", "errors"],
          rows: names.map(row),
        },
      ],
      notes: [
        "Client CPU is this process's user + system time over the round divided by the requests completed; upstream and nats-server run in other processes on the same 2 cores.",
        "Compare fetch + gw.dispatcher with fetch + undici Agent (same Pool options), and the three gw.request rows with each other.",
      ],
    });
  } finally {
    await Promise.all([gwOff.close(), gwNoProvider.close(), gwTraced.close(), gwOld?.close()]);
    await pool.close();
    await agent.close();
    await catalog.close();
    await up.child.stop(5000);
    await nats.close();
  }
}

main().catch((err) => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
});
