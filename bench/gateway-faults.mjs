#!/usr/bin/env node
// Fault injection against the gateway client, with real processes:
//   nats-server (test kit) ← roster-registry (bin) ← roster-agent (bin; an http check every
//   1 s, timeout 500 ms, failuresBeforeCritical 2, on each upstream) → 3 upstreams
//   (bench/lib/fault-upstream.mjs, each its own process on a fixed port)
// and the load generator in this process: `gw.request` from roster-gateway-client, open
// loop at a fixed rate (default 1,000 GET/s), whatever the answers take.
//
// Timeline per client (each window runs until the faulted instance is passing again in the
// registry and in the client's mirror, plus a settle time, so every request sent belongs to
// exactly one window):
//   warm-up (no fault) → kill -9 u0, restart it on the same port after --fault seconds →
//   SIGSTOP u1 for --fault seconds, SIGCONT → 503 on every path of u2 for --fault seconds →
//   u0 slowed by --slow-ms for --slow-for seconds → u2 marked draining through the agent's
//   maintenance API, stopped (SIGTERM) after --fault seconds as a deploy would, restarted and
//   put back in service.
// The same timeline runs once per client profile (--clients): "gateway" (the defaults:
// p2c-peak-ewma, 2 retries, outlier ejection, breakers, slow start), "naive" (round robin,
// no retries, no ejection, no breaker, no slow start; it still follows the registry's
// health), "blind" (as naive, and health-blind: panicThreshold 1 keeps every instance in),
// "nginx" (no gateway: an undici Pool to an nginx child in front of the 3 upstreams, with
// passive health: max_fails, fail_timeout, proxy_next_upstream error timeout http_503; it
// knows nothing of the registry, so it does not see "draining").
//
//   node bench/gateway-faults.mjs [--rate=1000] [--try-timeout=250] [--deadline=2000]
//     [--warmup=5] [--fault=5] [--slow-for=10] [--slow-ms=200] [--settle-after=1]
//     [--clients=gateway,naive,blind,nginx] [--faults=kill,hang,503,slow,drain]
// --faults picks the windows and their order (one fault alone shows it without the
// after-effects of the previous ones, e.g. an ejection that outlives its window).
//
// Markdown on stdout, progress on stderr. Needs `npm run build` first.
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { Pool } from "undici";
import { createGateway } from "roster-gateway-client";
import { ChildProc, NatsServer, freePort, waitFor } from "roster-testkit";
import { startAgent } from "./lib/agent.mjs";
import { closeHttp } from "./lib/http.mjs";
import { startNginx } from "./lib/nginx.mjs";
import { progress } from "./lib/log.mjs";
import { commandLine, numberOption, stringOption } from "./lib/options.mjs";
import { startRegistry } from "./lib/registry.mjs";
import { defer, runBench } from "./lib/run.mjs";
import { ServiceWatch } from "./lib/service-watch.mjs";
import { fmt, percentile } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";

const FAULT_UPSTREAM = fileURLToPath(new URL("./lib/fault-upstream.mjs", import.meta.url));
const SERVICE = "faults";
const quick = Boolean(process.env.BENCH_QUICK);

const RATE = numberOption("rate", 1000);
const TRY_TIMEOUT_MS = numberOption("try-timeout", 250);
const DEADLINE_MS = numberOption("deadline", 2000);
const WARMUP_S = numberOption("warmup", quick ? 2 : 5);
const FAULT_S = numberOption("fault", quick ? 3 : 5);
const SLOW_FOR_S = numberOption("slow-for", quick ? 4 : 10);
const SLOW_MS = numberOption("slow-ms", 200);
// Not "settle": run-all --quick sets BENCH_SETTLE for another benchmark.
const SETTLE_S = numberOption("settle-after", 1);
const FAULT_NAMES = ["kill", "hang", "503", "slow", "drain"];
const FAULTS = stringOption("faults", "kill,hang,503,slow")
  .split(",")
  .map((s) => s.trim())
  .filter(Boolean);
const CLIENTS = stringOption("clients", quick ? "gateway,naive" : "gateway,naive,blind")
  .split(",")
  .map((s) => s.trim())
  .filter(Boolean);

const CHECK = { type: "http", path: "/health", interval: "1s", timeout: "500ms", failuresBeforeCritical: 2 };
const CHECK_LABEL = "http check every 1 s, timeout 500 ms, failuresBeforeCritical 2";

/** Options common to every client, then what each profile changes. */
const COMMON = { tryTimeout: TRY_TIMEOUT_MS, deadline: DEADLINE_MS };
const NAIVE_BALANCER = {
  outlier: { consecutiveFailures: 0, maxEjectedShare: 0 },
  breaker: { failureThreshold: 0 },
  slowStart: { windowMs: 0 },
};
const PROFILES = {
  gateway: {
    label: "gateway (defaults)",
    describe: "balancer p2c-peak-ewma, maxRetries 2, retry budget 20 % + 10/s, outlier ejection (refused → at once, 5 consecutive failures), breaker 5 failures / 10 s, slow start 30 s, panic below 50 %",
    options: {},
  },
  naive: {
    label: "naive round robin",
    describe: `balancer round-robin, maxRetries 0, balancerOptions ${JSON.stringify(NAIVE_BALANCER)}; still drops instances the registry marks critical`,
    options: { balancer: "round-robin", maxRetries: 0, balancerOptions: NAIVE_BALANCER },
  },
  nginx: {
    label: "nginx (passive health)",
    describe: "",
    nginx: true,
    options: {},
  },
  blind: {
    label: "naive, health-blind",
    describe: `as naive, plus panicThreshold 1 (any unusable instance puts the balancer in panic: all 3 instances stay in rotation whatever the registry says): balancerOptions ${JSON.stringify({ ...NAIVE_BALANCER, panicThreshold: 1 })}`,
    options: { balancer: "round-robin", maxRetries: 0, balancerOptions: { ...NAIVE_BALANCER, panicThreshold: 1 } },
  },
};
/** nginx's passive health settings, as an operator would set them next to our client's tryTimeout. */
const NGINX_PASSIVE = { maxFails: 1, failTimeout: "10s", tries: 3, connectTimeout: `${TRY_TIMEOUT_MS}ms`, readTimeout: "1s" };
PROFILES.nginx.describe = `nginx, 1 worker, upstream keepalive 64, max_fails=${NGINX_PASSIVE.maxFails} fail_timeout=${NGINX_PASSIVE.failTimeout}, proxy_next_upstream error timeout http_503, proxy_next_upstream_tries ${NGINX_PASSIVE.tries}, proxy_connect_timeout ${NGINX_PASSIVE.connectTimeout}, proxy_read_timeout ${NGINX_PASSIVE.readTimeout}; the caller: an undici Pool, headers/body timeout ${DEADLINE_MS} ms (the deadline), no retries of its own`;

/**
 * A gateway-shaped stand-in for the nginx profile: requests go through nginx; no mirror, so the
 * "mirror" is the registry's view (used only to know when a window may close), no stats.
 */
async function nginxClient(ups, watch) {
  const nginx = await startNginx({ upstreams: ups.map((u) => u.port), passive: NGINX_PASSIVE });
  const pool = new Pool(nginx.url, { connections: 256, keepAliveTimeout: 4000, headersTimeout: DEADLINE_MS, bodyTimeout: DEADLINE_MS, connect: { timeout: 1000 } });
  progress(`nginx ${nginx.version} on ${nginx.url} (pid ${nginx.pid})`);
  return {
    nginx,
    request: (_service, { path }) => pool.request({ path, method: "GET" }),
    instances: () => watch.instances,
    stats: () => undefined,
    on: () => {},
    async close() {
      await pool.close().catch(() => {});
      await nginx.stop();
    },
  };
}

for (const f of FAULTS) {
  if (!FAULT_NAMES.includes(f)) {
    process.stderr.write(`unknown fault "${f}": expected ${FAULT_NAMES.join(", ")}\n`);
    process.exit(2);
  }
}
for (const c of CLIENTS) {
  if (!PROFILES[c]) {
    process.stderr.write(`unknown client "${c}": expected ${Object.keys(PROFILES).join(", ")}\n`);
    process.exit(2);
  }
}

// ---------------------------------------------------------------------------------------
// Upstreams

class Upstream {
  constructor(index, port) {
    this.index = index;
    this.name = `u${index}`;
    this.id = `${SERVICE}-${index}`;
    this.port = port;
    this.child = null;
    this.stopped = false;
  }

  async start() {
    for (let attempt = 1; ; attempt++) {
      const child = new ChildProc(process.execPath, [FAULT_UPSTREAM, String(this.port), this.name], { stdio: ["ignore", "pipe", "pipe", "ipc"] });
      this.child = child;
      try {
        await Promise.race([
          child.waitForOutput("listening", 10_000),
          child.exited.then(({ code, signal }) => {
            throw new Error(`${this.name} exited (${signal ?? code}) at start: ${child.output.slice(-500)}`);
          }),
        ]);
        this.stopped = false;
        return;
      } catch (err) {
        child.kill("SIGKILL");
        if (attempt >= 5) throw err;
        await sleep(200); // the port may still be held for a moment after a kill -9
      }
    }
  }

  /** Sets a mode over IPC and waits for the acknowledgement. */
  async mode(msg) {
    const proc = this.child.proc;
    const ack = new Promise((resolve, reject) => {
      const timer = setTimeout(() => (proc.off("message", on), reject(new Error(`${this.name}: no ack for mode ${msg.mode}`))), 5000);
      const on = (m) => {
        if (m?.type === "mode" && m.mode === msg.mode) {
          clearTimeout(timer);
          proc.off("message", on);
          resolve();
        }
      };
      proc.on("message", on);
    });
    proc.send({ cmd: "mode", ...msg });
    await ack;
  }

  kill9() {
    this.child.kill("SIGKILL");
    return this.child.exited;
  }

  sigstop() {
    this.stopped = true;
    this.child.kill("SIGSTOP");
  }

  sigcont() {
    this.child.kill("SIGCONT");
    this.stopped = false;
  }

  /** Every exit path: a stopped process cannot act on SIGTERM, so continue it first. */
  async close() {
    if (!this.child?.alive) return;
    this.child.kill("SIGCONT");
    await this.child.stop(2000);
  }
}

// ---------------------------------------------------------------------------------------
// Registry and mirror views of one instance

const statusIn = (instances, id) => instances.find((i) => i.id === id)?.status ?? "absent";

async function waitRegistry(watch, pred, what, timeoutMs = 30_000) {
  await watch.until(pred, { timeoutMs, what });
}

async function waitMirror(gw, pred, what, timeoutMs = 30_000) {
  await waitFor(() => pred(gw.instances(SERVICE)), { timeoutMs, intervalMs: 20, what });
}

const allPassing = (instances, ups) => ups.every((u) => statusIn(instances, u.id) === "passing");

// ---------------------------------------------------------------------------------------
// Load: open loop at RATE requests/s through the client

function startLoad(gw) {
  const state = { window: null, inFlight: 0, sent: 0, stopped: false };
  const t0 = performance.now();
  const fire = () => {
    const w = state.window;
    w.sent++;
    const afterRecovery = w.recovered;
    if (afterRecovery) w.sentAfterRecovery++;
    state.inFlight++;
    const start = performance.now();
    const done = (error, upstream) => {
      const ms = performance.now() - start;
      w.lat.push(ms);
      if (ms > DEADLINE_MS) {
        const k = error ?? "ok";
        w.pastDeadline[k] = (w.pastDeadline[k] ?? 0) + 1;
      }
      if (error) {
        w.failed++;
        w.errors[error] = (w.errors[error] ?? 0) + 1;
      } else if (w.target && upstream === w.target.name) {
        w.toTarget++;
        if (afterRecovery) w.toTargetAfterRecovery++;
      }
      state.inFlight--;
    };
    gw.request(SERVICE, { path: "/" }).then(
      async (res) => {
        try {
          await res.body.dump();
        } catch {
          // a body that fails to read is still an answered request: the status decides
        }
        done(res.statusCode >= 200 && res.statusCode < 300 ? null : `HTTP ${res.statusCode}`, res.headers["x-upstream"]);
      },
      (err) => done(err?.code ?? err?.name ?? "error"),
    );
  };
  const timer = setInterval(() => {
    if (state.stopped) return;
    const now = performance.now();
    const due = Math.floor(((now - t0) * RATE) / 1000);
    while (state.sent < due) {
      const lag = now - (t0 + (state.sent * 1000) / RATE);
      if (lag > state.window.maxLagMs) state.window.maxLagMs = lag;
      state.sent++;
      fire();
    }
  }, 1);
  return {
    state,
    async stop() {
      state.stopped = true;
      clearInterval(timer);
      await waitFor(() => state.inFlight === 0, { timeoutMs: DEADLINE_MS + 10_000, intervalMs: 20, what: "requests in flight to finish" });
    },
  };
}

function newWindow(name, target = null) {
  return {
    name,
    target,
    tStart: performance.now(),
    tEnd: NaN,
    sent: 0,
    failed: 0,
    errors: {},
    pastDeadline: {},
    lat: [],
    toTarget: 0,
    recovered: false,
    sentAfterRecovery: 0,
    toTargetAfterRecovery: 0,
    ejectedAtEnd: "",
    panicMs: 0,
    maxLagMs: 0,
    retries: 0,
    budgetExhausted: 0,
    panics: 0,
    registryCriticalMs: NaN,
    mirrorCriticalMs: NaN,
  };
}

// ---------------------------------------------------------------------------------------
// One client through the whole timeline

async function runClient(key, env) {
  const { nats, watch, ups } = env;
  const profile = PROFILES[key];
  progress(`[${key}] ${profile.label}: ${profile.describe}`);
  await waitRegistry(watch, (w) => allPassing(w.instances, ups), "all 3 instances passing");
  const gw = profile.nginx ? await nginxClient(ups, watch) : await createGateway({ nats: nats.url, services: [SERVICE], ...COMMON, ...profile.options });
  let closed = false;
  const closeGw = async () => {
    if (!closed) {
      closed = true;
      // Bounded: a close that hangs is reported, and the next client still runs.
      const t = setTimeout(() => progress(`[${key}] close() has not returned after 10 s; going on without it`), 10_000);
      await Promise.race([gw.close(), sleep(10_000)]);
      clearTimeout(t);
    }
  };
  defer(closeGw);
  await waitMirror(gw, (inst) => allPassing(inst, ups), `[${key}] mirror: all 3 instances passing`);

  const windows = [];
  let current = null;
  const stat = () => gw.stats(SERVICE) ?? { retries: 0, budgetExhausted: 0 };
  let last = stat();
  const open = (name, target) => {
    const now = stat();
    if (current) {
      current.tEnd = performance.now();
      panicTime(current, current.tEnd);
      const t = Date.now();
      current.ejectedAtEnd = now.endpoints
        ?.filter((e) => e.ejectedUntil > t)
        .map((e) => `${ups.find((u) => u.id === e.id)?.name ?? e.id} (${((e.ejectedUntil - t) / 1000).toFixed(0)} s left)`)
        .join(", ");
      current.retries = now.retries - last.retries;
      current.budgetExhausted = now.budgetExhausted - last.budgetExhausted;
    }
    last = now;
    current = newWindow(name, target);
    windows.push(current);
    load.state.window = current;
    return current;
  };
  let panicSince = NaN;
  const panicTime = (w, now) => {
    if (!Number.isNaN(panicSince)) {
      w.panicMs += now - Math.max(panicSince, w.tStart);
      panicSince = now;
    }
  };
  gw.on("panic", (service, panic) => {
    if (service !== SERVICE || !current) return;
    const now = performance.now();
    if (panic) {
      current.panics++;
      if (Number.isNaN(panicSince)) panicSince = now;
    } else {
      panicTime(current, now);
      panicSince = NaN;
    }
  });
  gw.on("change", (service) => {
    const w = current;
    if (service !== SERVICE || !w?.target || !Number.isNaN(w.mirrorCriticalMs)) return;
    if (["critical", "draining"].includes(statusIn(gw.instances(SERVICE), w.target.id))) w.mirrorCriticalMs = performance.now() - w.tStart;
  });
  const watchCritical = (w, status = "critical") => {
    watch
      .until((x) => statusIn(x.instances, w.target.id) === status, { after: w.tStart, timeoutMs: (FAULT_S + SLOW_FOR_S + 10) * 1000, what: "critical" })
      .then((t) => {
        // Only within the window: a later "critical" belongs to another fault.
        if (!Number.isNaN(t) && (Number.isNaN(w.tEnd) || t <= w.tEnd)) w.registryCriticalMs = t - w.tStart;
      })
      .catch(() => {});
  };
  // After a fault is lifted: wait past a check interval (a late "critical" must land in
  // this window, not the next), then until the registry and the mirror say passing again.
  const recover = async (u) => {
    await sleep(1500);
    await waitRegistry(watch, (x) => statusIn(x.instances, u.id) === "passing", `${u.id} passing again`);
    await waitMirror(gw, (inst) => statusIn(inst, u.id) === "passing", `[${key}] mirror: ${u.id} passing again`);
    current.recovered = true;
    await sleep(SETTLE_S * 1000);
  };
  const report = (w) => {
    const s = summarize(w);
    progress(`[${key}] ${w.name}: ${s.sent} sent, ${s.failed} failed, ${s.over100} > 100 ms, ${s.over500} > 500 ms, p99 ${fmt(s.p99, 1)} ms, p99.9 ${fmt(s.p999, 1)} ms, registry critical ${fmt(w.registryCriticalMs, 0)} ms${w.failed ? `, errors ${JSON.stringify(w.errors)}` : ""}`);
  };

  const load = startLoad(gw);
  let stopped = false;
  const stopLoad = async () => {
    if (!stopped) {
      stopped = true;
      await load.stop();
    }
  };
  defer(stopLoad);

  open("warm-up, no fault");
  await sleep(WARMUP_S * 1000);

  const faults = {
    // 1. kill -9, restart on the same port
    kill: async () => {
      const u = ups[0];
      const w = open(`kill -9 ${u.name}, restart after ${FAULT_S} s`, u);
      watchCritical(w);
      progress(`[${key}] kill -9 ${u.name} (pid ${u.child.pid})`);
      await u.kill9();
      await sleep(FAULT_S * 1000);
      await u.start();
      progress(`[${key}] ${u.name} restarted (pid ${u.child.pid})`);
      await recover(u);
    },
    // 2. hang: SIGSTOP for FAULT_S, then SIGCONT
    hang: async () => {
      const u = ups[1];
      const w = open(`SIGSTOP ${u.name} for ${FAULT_S} s`, u);
      watchCritical(w);
      progress(`[${key}] SIGSTOP ${u.name}`);
      u.sigstop();
      await sleep(FAULT_S * 1000);
      u.sigcont();
      progress(`[${key}] SIGCONT ${u.name}`);
      await recover(u);
    },
    // 3. 503 on every path for FAULT_S
    "503": async () => {
      const u = ups[2];
      const w = open(`503 burst on ${u.name} for ${FAULT_S} s`, u);
      watchCritical(w);
      progress(`[${key}] 503 burst on ${u.name}`);
      await u.mode({ mode: "503", durationMs: FAULT_S * 1000 });
      await sleep(FAULT_S * 1000);
      await recover(u);
    },
    // 4. slow: +SLOW_MS on every answer for SLOW_FOR_S
    slow: async () => {
      const u = ups[0];
      const w = open(`${u.name} slowed by ${SLOW_MS} ms for ${SLOW_FOR_S} s`, u);
      watchCritical(w);
      progress(`[${key}] ${u.name} slowed by ${SLOW_MS} ms`);
      await u.mode({ mode: "slow", delayMs: SLOW_MS, durationMs: SLOW_FOR_S * 1000 });
      await sleep(SLOW_FOR_S * 1000);
      await recover(u);
    },
  };
  // 5. draining: maintenance on through the agent's API, then the instance is stopped as a
  // deploy would stop it (SIGTERM: it closes its connections), restarted, maintenance off.
  faults.drain = async () => {
    const u = ups[2];
    const w = open(`${u.name} draining (agent maintenance API), SIGTERM after ${FAULT_S} s, restart`, u);
    watchCritical(w, "draining");
    progress(`[${key}] ${u.name} draining`);
    await env.maintenance(u.id, true);
    await sleep(FAULT_S * 1000);
    progress(`[${key}] ${u.name} stopped (SIGTERM)`);
    await u.child.stop(2000);
    await sleep(500);
    await u.start();
    await env.maintenance(u.id, false);
    await recover(u);
  };
  for (const f of FAULTS) await faults[f]();
  open("end"); // closes the last window's counters
  await stopLoad();
  windows.pop();
  for (const w of windows) report(w);
  const endpoints = gw.stats(SERVICE)?.endpoints ?? [];
  await closeGw();
  return { key, profile, windows, endpoints };
}

function summarize(w) {
  const over100 = w.lat.filter((x) => x > 100).length;
  const over500 = w.lat.filter((x) => x > 500).length;
  return {
    sent: w.sent,
    failed: w.failed,
    over100,
    over500,
    p50: percentile(w.lat, 50),
    p99: percentile(w.lat, 99),
    p999: percentile(w.lat, 99.9),
    seconds: (w.tEnd - w.tStart) / 1000,
  };
}

// ---------------------------------------------------------------------------------------

const perClientS = WARMUP_S + 3 * (FAULT_S + 1.5 + SETTLE_S + 5) + SLOW_FOR_S + 1.5 + SETTLE_S + 5 + 20;
const maxSeconds = Math.ceil(90 + CLIENTS.length * perClientS * 2);

await runBench("gateway-faults", maxSeconds, async () => {
  progress(`gateway-faults: ${RATE} req/s, tryTimeout ${TRY_TIMEOUT_MS} ms, deadline ${DEADLINE_MS} ms, clients ${CLIENTS.join(", ")} (deadline ${maxSeconds}s)`);
  const nats = await NatsServer.start();
  defer(() => nats.close());
  const registry = await startRegistry({ natsUrl: nats.url });
  defer(() => registry.stop());
  const ups = [];
  defer(async () => {
    for (const u of ups) await u.close();
  });
  for (let i = 0; i < 3; i++) {
    const u = new Upstream(i, await freePort());
    ups.push(u);
    await u.start();
  }
  const agent = await startAgent({
    natsUrl: nats.url,
    config: {
      host: { id: "bench-faults" },
      drain: { period: "0s" },
      services: ups.map((u) => ({ name: SERVICE, id: u.id, port: u.port, address: "127.0.0.1", checks: [CHECK] })),
    },
  });
  defer(() => agent.stop());
  const maintenance = async (id, enable) => {
    const res = await fetch(`http://${agent.config.api.listen}/v1/agent/instances/${id}/maintenance`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ enable, reason: "bench: draining before a deploy" }),
    });
    if (res.status !== 200) throw new Error(`maintenance ${id} ${enable}: HTTP ${res.status} ${await res.text()}`);
  };
  const watch = new ServiceWatch(registry.httpUrl, SERVICE);
  defer(() => watch.close());
  progress(`nats ${nats.url}, registry ${registry.httpUrl} (pid ${registry.pid}), agent pid ${agent.pid}, upstreams ${ups.map((u) => `${u.name}:${u.port}`).join(" ")}`);

  const results = [];
  for (const c of CLIENTS) results.push(await runClient(c, { nats, watch, ups, maintenance }));

  const headers = ["window", "s", "sent", "failed", "> 100 ms", "> 500 ms", "p50 ms", "p99 ms", "p99.9 ms", "retries", "registry critical after (ms)", "mirror critical after (ms)", "answered by faulted instance", "… once passing again", "panic (ms)", "ejected at window end"];
  const tables = results.map((r) => ({
    caption: `${r.profile.label}: ${r.profile.describe}`,
    headers,
    rows: r.windows.map((w) => {
      const s = summarize(w);
      const hasTarget = Boolean(w.target);
      return [
        w.name,
        fmt(s.seconds, 1),
        s.sent,
        s.failed,
        s.over100,
        s.over500,
        fmt(s.p50, 2),
        fmt(s.p99, 1),
        fmt(s.p999, 1),
        w.retries,
        hasTarget ? (Number.isNaN(w.registryCriticalMs) ? "not critical" : fmt(w.registryCriticalMs, 0)) : "",
        hasTarget ? (r.profile.nginx ? "n/a (no mirror)" : Number.isNaN(w.mirrorCriticalMs) ? "not critical" : fmt(w.mirrorCriticalMs, 0)) : "",
        hasTarget ? `${fmt((w.toTarget / Math.max(1, s.sent)) * 100, 1)} %` : "",
        hasTarget ? `${fmt((w.toTargetAfterRecovery / Math.max(1, w.sentAfterRecovery)) * 100, 1)} % of ${w.sentAfterRecovery}` : "",
        fmt(w.panicMs, 0),
        w.ejectedAtEnd || "none",
      ];
    }),
  }));
  // Side by side per fault window.
  const faultNames = results[0].windows.slice(1).map((w) => w.name);
  const compare = {
    caption: "Side by side: failed / slower than 100 ms / slower than 500 ms / p99.9 (ms), per fault window",
    headers: ["window", ...results.map((r) => r.profile.label)],
    rows: faultNames.map((name, i) => [
      name,
      ...results.map((r) => {
        const w = r.windows[i + 1];
        const s = summarize(w);
        return `${s.failed} / ${s.over100} / ${s.over500} / ${fmt(s.p999, 0)}`;
      }),
    ]),
  };
  const headline = {
    caption: "Headline: success ratio (answered 2xx ÷ sent) and p99 (ms), per fault window",
    headers: ["window", ...results.map((r) => r.profile.label)],
    rows: faultNames.map((name, i) => [
      name,
      ...results.map((r) => {
        const s = summarize(r.windows[i + 1]);
        return `${fmt(((s.sent - s.failed) / Math.max(1, s.sent)) * 100, 2)} % / ${fmt(s.p99, 0)}`;
      }),
    ]),
  };
  const figures = Object.fromEntries(
    results.map((r) => [
      r.key,
      r.windows.map((w) => {
        const s = summarize(w);
        return { window: w.name, sent: s.sent, failed: s.failed, successRatio: (s.sent - s.failed) / Math.max(1, s.sent), p50: s.p50, p99: s.p99, p999: s.p999, over100: s.over100, over500: s.over500, errors: w.errors, registryCriticalMs: w.registryCriticalMs, mirrorCriticalMs: w.mirrorCriticalMs };
      }),
    ]),
  );
  const notes = [
    `Upstreams: 3 node:http processes (bench/lib/fault-upstream.mjs), registered by one roster-agent with an ${CHECK_LABEL}; registry and nats-server are real processes too. The load generator and the client under test share this process (the gateway client is a library in the caller); nginx is a child process of its own, with a static list of the 3 upstreams. "draining" is the agent's maintenance mode (PUT /v1/agent/instances/:id/maintenance), which the registry publishes as status draining; the instance is then stopped with SIGTERM (it closes its connections, as a deploy would), restarted and put back in service. "registry critical after" is the time to "draining" in that window.`,
    `Load: open loop, ${RATE} GET/s, each request sent on schedule whatever the previous ones do; latency from the call to the end of the body; a failure is any rejection or a non-2xx status. Client settings common to all: tryTimeout ${TRY_TIMEOUT_MS} ms, deadline ${DEADLINE_MS} ms (gateway defaults otherwise, hedging off).`,
    `A window runs from the fault to the faulted instance being passing again in the registry and in the client's mirror, plus ${SETTLE_S} s; every request is counted in the window it was sent in. "… once passing again" is the share of the requests sent in the last ${SETTLE_S} s of the window (the instance passing again in the registry and the mirror) that the faulted instance answered (a third is an even share). "panic" is how long the balancer spent in panic mode in the window; "ejected" lists the instances the client's outlier detector still held ejected when the window closed. "registry critical after" is from the fault to a blocking query of the registry's HTTP API returning the instance critical; "mirror critical after" is the same seen in the client's catalog mirror (NATS delta).`,
    ...results.map((r) => {
      const errs = {};
      let lag = 0;
      let panics = 0;
      let budget = 0;
      for (const w of r.windows) {
        for (const [k, v] of Object.entries(w.errors)) errs[k] = (errs[k] ?? 0) + v;
        lag = Math.max(lag, w.maxLagMs);
        panics += w.panics;
        budget += w.budgetExhausted;
      }
      const list = Object.entries(errs).map(([k, v]) => `${k} × ${v}`).join(", ") || "none";
      const late = r.windows
        .filter((w) => Object.keys(w.pastDeadline).length)
        .map((w) => `${w.name}: ${Object.entries(w.pastDeadline).map(([k, v]) => `${k} × ${v}`).join(", ")}`)
        .join("; ");
      return `${r.profile.label}: errors ${list}; requests that took longer than the ${DEADLINE_MS} ms deadline: ${late || "none"}; retry budget refusals ${budget}; panic entered ${panics} time(s); worst load-generator lag ${fmt(lag, 1)} ms.`;
    }),
    "Percentiles are nearest-rank over every request sent in the window (failed ones included, with the time they took to fail). The machine has 2 cores shared with other work, and every process of the test runs on them.",
  ];
  printReport({
    title: `Faults: ${FAULTS.join(", ")} — ${results.map((r) => r.profile.label).join(" vs ")}`,
    command: commandLine("bench/gateway-faults.mjs"),
    params: {
      rate: `${RATE}/s`,
      tryTimeout: `${TRY_TIMEOUT_MS}ms`,
      deadline: `${DEADLINE_MS}ms`,
      warmup: `${WARMUP_S}s`,
      fault: `${FAULT_S}s`,
      "slow-for": `${SLOW_FOR_S}s`,
      "slow-ms": SLOW_MS,
      "settle-after": `${SETTLE_S}s`,
      clients: CLIENTS.join("+"),
      faults: FAULTS.join("+"),
    },
    figures,
    tables: [headline, compare, ...tables],
    notes,
  });
  await closeHttp();
});
