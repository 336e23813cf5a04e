#!/usr/bin/env node
// The gateway's own CPU per request, without network or upstream noise: undici's
// Pool.prototype.request is replaced by a stub that answers on the next microtask with an
// already-closed body, so what is timed is the request path itself (pick, slot, try timer,
// headers, outcome feedback, async context, tracing hooks). Compared: the stub called directly
// (the floor), gw.request with tracing off, with @opentelemetry/api installed but no provider,
// with a recording provider (spans dropped by a no-op processor), and — when given
// `--old=<path to an older build's index.js>` — that build. Alternated rounds, medians of
// ns/request. Single process; on a busy machine compare rows of one run, not runs.
//
//   node bench/gateway-overhead.mjs [--requests=200000] [--rounds=7] [--old=gateway-client/dist/old/src/index.js]
import { Pool } from "undici";
import { NatsServer } from "roster-testkit";
import { BasicTracerProvider, NoopSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { numberOption, stringOption, commandLine } from "./lib/options.mjs";
import { fmt } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";
import { median, startCatalog } from "./gateway-throughput.mjs";
import { stubPoolRequest } from "./lib/request-path.mjs";

const quick = Boolean(process.env.BENCH_QUICK) || process.argv.includes("--quick");
const REQUESTS = numberOption("requests", quick ? 50_000 : 200_000);
const ROUNDS = numberOption("rounds", quick ? 3 : 7);
const OLD = stringOption("old", "");
const CONCURRENCY = 32;

stubPoolRequest();

async function timeIt(once) {
  let left = REQUESTS;
  const worker = async () => {
    while (left-- > 0) await once();
  };
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const cpu = process.cpuUsage(c0);
  return { wallNs: Number(process.hrtime.bigint() - t0) / REQUESTS, cpuNs: ((cpu.user + cpu.system) * 1000) / REQUESTS };
}

async function main() {
  const nats = await NatsServer.start({ jetstream: false });
  const catalog = await startCatalog(nats.url, [{ id: "single", service: "bench", address: "127.0.0.1", port: 9 }]);
  const mod = await import("roster-gateway-client");
  const gws = [];
  const make = async (m, opts) => {
    const gw = await m.createGateway({ nats: nats.url, services: ["bench"], ...opts });
    gws.push(gw);
    return gw;
  };
  const pool = new Pool("http://127.0.0.1:9");
  const stub = () => new Promise((resolve) => pool.request({ path: "/", method: "GET" }, (_e, r) => resolve(r)));
  const viaGw = (gw) => () => gw.request("bench");
  const clients = {
    "stub Pool.request (floor)": stub,
    "gw.request, tracing off": viaGw(await make(mod, { tracing: false })),
    "gw.request, OTel API, no provider": viaGw(await make(mod, {})),
    "gw.request, OTel provider recording": viaGw(await make(mod, { tracing: { tracerProvider: new BasicTracerProvider({ spanProcessors: [new NoopSpanProcessor()] }) } })),
  };
  if (OLD) {
    const old = await import(new URL(OLD, `file://${process.cwd()}/`).href);
    clients["older build: gw.request"] = viaGw(await make(old, {}));
  }
  const names = Object.keys(clients);
  try {
    for (const n of names) await timeIt(clients[n]);
    const results = Object.fromEntries(names.map((n) => [n, []]));
    for (let r = 0; r < ROUNDS; r++) {
      for (const n of r % 2 === 0 ? names : [...names].reverse()) {
        const x = await timeIt(clients[n]);
        results[n].push(x);
        process.stderr.write(`round ${r + 1} ${n}: ${x.cpuNs.toFixed(0)} ns CPU/req\n`);
      }
    }
    const floor = median(results[names[0]].map((x) => x.cpuNs));
    printReport({
      title: "Gateway request path: CPU per request over a stubbed pool (no network)",
      command: commandLine("bench/gateway-overhead.mjs"),
      params: { requests: REQUESTS, rounds: ROUNDS, concurrency: CONCURRENCY },
      tables: [
        {
          caption: "Medians over rounds",
          headers: ["client", "CPU ns/request", "added over the stub, ns", "wall ns/request"],
          rows: names.map((n) => {
            const cpu = median(results[n].map((x) => x.cpuNs));
            return [n, fmt(cpu, 0), n === names[0] ? "—" : fmt(cpu - floor, 0), fmt(median(results[n].map((x) => x.wallNs)), 0)];
          }),
        },
      ],
      notes: ["One process; the stub answers on the next microtask with a closed body, so the rows differ only by the gateway's own work."],
    });
  } finally {
    for (const gw of gws) await gw.close();
    await catalog.close();
    await nats.close();
  }
}

main().catch((err) => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
});
