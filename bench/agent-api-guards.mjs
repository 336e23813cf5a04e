#!/usr/bin/env node
// What the agent API's guards cost: the Host check (DNS rebinding) and the bearer-token check,
// alone (ns per call) and on the whole request path (µs per GET over keep-alive HTTP, the real
// fastify API of the agent, in process), with and without a token to check.
//
//   node bench/agent-api-guards.mjs [--calls=1000000] [--requests=20000] [--rounds=5] [--quick]
import { performance } from "node:perf_hooks";
import { Pool } from "undici";
import { pino } from "pino";
import { BearerAuth } from "roster-schemas";
import { buildApi, hostAllowed } from "../agent/dist/src/adapters/api.js";
import { commandLine, numberOption } from "./lib/options.mjs";
import { printReport } from "./lib/table.mjs";
import { fmt } from "./lib/stats.mjs";

const quick = process.argv.includes("--quick");
const CALLS = numberOption("calls", quick ? 200_000 : 1_000_000);
const REQUESTS = numberOption("requests", quick ? 3_000 : 20_000);
const ROUNDS = numberOption("rounds", quick ? 3 : 5);
const TOKEN = "bench-token-0123456789abcdef";
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function nsPerCall(fn) {
  const rounds = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = performance.now();
    for (let i = 0; i < CALLS; i++) fn(i);
    rounds.push(((performance.now() - t0) * 1e6) / CALLS);
  }
  return median(rounds);
}

let sink = 0;
const hostNs = nsPerCall((i) => {
  if (hostAllowed(i & 1 ? "127.0.0.1:7701" : "localhost:7701", "127.0.0.1", [])) sink++;
});
const auth = new BearerAuth({ tokens: [{ name: "api.token", secret: TOKEN, scopes: ["read", "write"] }], openReads: true, openPaths: ["/healthz"] });
const header = `Bearer ${TOKEN}`;
const tokenNs = nsPerCall(() => {
  if (auth.check({ method: "PUT", path: "/v1/agent/instances", authorization: header }).ok) sink++;
});

const ops = {
  info: () => ({ hostId: "bench", epoch: 1, natsConnected: true, draining: false, instances: 0 }),
  list: () => [],
  get: () => {
    throw new Error("unused");
  },
  upsert: () => ({ id: "x", replaced: false }),
  remove: () => undefined,
  maintenance: () => undefined,
  ttlReport: () => undefined,
};

async function usPerRequest(apiAuth, headers) {
  const app = buildApi(ops, pino({ level: "silent" }), { host: "127.0.0.1", ...apiAuth });
  const url = await app.listen({ host: "127.0.0.1", port: 0 });
  const pool = new Pool(url, { connections: 1, pipelining: 1 });
  try {
    const one = async () => {
      const res = await pool.request({ path: "/v1/agent/instances", method: "GET", headers });
      await res.body.dump();
      if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
    };
    for (let i = 0; i < 500; i++) await one(); // warm-up
    const t0 = performance.now();
    for (let i = 0; i < REQUESTS; i++) await one();
    return ((performance.now() - t0) * 1000) / REQUESTS;
  } finally {
    await pool.close();
    await app.close();
  }
}

// Interleaved rounds: the machine is shared, so the two cases see the same background load.
const open = [];
const guarded = [];
for (let r = 0; r < ROUNDS; r++) {
  open.push(await usPerRequest({}, { host: `127.0.0.1` }));
  guarded.push(await usPerRequest({ token: TOKEN, openReads: false }, { host: "127.0.0.1", authorization: header }));
}

printReport({
  title: "Agent API guards: Host check and bearer token",
  command: commandLine("bench/agent-api-guards.mjs"),
  params: { calls: CALLS, requests: REQUESTS, rounds: ROUNDS },
  figures: { hostCheckNs: hostNs, tokenCheckNs: tokenNs, getOpenUs: median(open), getTokenUs: median(guarded), sink },
  tables: [
    { caption: "one call (median of rounds)", headers: ["guard", "ns per call"], rows: [["Host check (hostAllowed)", fmt(hostNs, 0)], ["bearer token check (BearerAuth.check, SHA-256 + timingSafeEqual)", fmt(tokenNs, 0)]] },
    {
      caption: "GET /v1/agent/instances over keep-alive HTTP, one connection (median of rounds)",
      headers: ["API", "µs per request", "rounds"],
      rows: [
        ["Host check, no token", fmt(median(open), 1), open.map((x) => fmt(x, 1)).join(" / ")],
        ["Host check + token required", fmt(median(guarded), 1), guarded.map((x) => fmt(x, 1)).join(" / ")],
      ],
    },
  ],
  notes: ["The Host check runs on every request; the token check on every request once a token is set (reads too with openReads: false, as here)."],
});
