#!/usr/bin/env node
// A load generator in its own process (forked, IPC), so the process under test never makes
// its own load: closed loop, `concurrency` requests in flight, for `seconds`, through either a
// real gateway client (`createGateway`, calls `gw.request(service)`) or a raw undici Pool to
// one URL (nginx, or a single upstream: the floor).
//
// Parent → child: { cmd: "setup", mode: "gateway", nats, service, options }
//                 { cmd: "setup", mode: "url", url, connections }
//                 { cmd: "run", seconds, concurrency }  → { type: "result", n, errors, rps, p50, p99, p999, cpuUsPerReq, byUpstream }
//                 { cmd: "close" }
// Child → parent: { type: "ready" }, { type: "setup-done" }, { type: "error", message }.
import { Pool } from "undici";
import { createGateway } from "roster-gateway-client";

const send = (m) => process.send?.(m);
let call = null;
let closeFn = async () => {};

function pct(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

async function setup(m) {
  if (m.mode === "gateway") {
    const gw = await createGateway({ nats: m.nats, services: [m.service], ...(m.options ?? {}) });
    call = () => gw.request(m.service, { path: "/" });
    closeFn = () => gw.close();
  } else {
    const pool = new Pool(m.url, { connections: m.connections ?? 64, keepAliveTimeout: 4000, connect: { timeout: 1000 } });
    call = () => pool.request({ path: "/", method: "GET" });
    closeFn = () => pool.close();
  }
}

async function run(seconds, concurrency) {
  const lat = [];
  let errors = 0;
  const byUpstream = {};
  const end = performance.now() + seconds * 1000;
  const worker = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      try {
        const res = await call();
        await res.body.dump();
        if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
        lat.push(performance.now() - t0);
        const u = res.headers["x-upstream"] ?? "?";
        byUpstream[u] = (byUpstream[u] ?? 0) + 1;
      } catch {
        errors++;
      }
    }
  };
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const sorted = Float64Array.from(lat).sort();
  return {
    n: lat.length,
    errors,
    rps: lat.length / elapsed,
    p50: pct(sorted, 50),
    p99: pct(sorted, 99),
    p999: pct(sorted, 99.9),
    cpuUsPerReq: lat.length ? (cpu.user + cpu.system) / lat.length : NaN,
    byUpstream,
  };
}

process.on("message", async (m) => {
  try {
    if (m?.cmd === "setup") {
      await setup(m);
      send({ type: "setup-done" });
    } else if (m?.cmd === "run") {
      send({ type: "result", ...(await run(m.seconds, m.concurrency)) });
    } else if (m?.cmd === "close") {
      await closeFn().catch(() => {});
      process.exit(0);
    }
  } catch (err) {
    send({ type: "error", message: String(err?.stack ?? err) });
  }
});
process.on("disconnect", () => process.exit(0));
send({ type: "ready" });
