#!/usr/bin/env node
// `npm start`: a local Roster stack — nats-server (JetStream, data in ./.roster/), the registry, an agent
// with examples/agent.yaml, and the two demo services it registers. Ctrl-C stops everything it started.
// Logs of every process go to ./.roster/logs/<name>.log (JSON lines); this script's own lines go
// through the shared pino logger (pretty at a terminal when pino-pretty is installed, else JSON).
import { spawn, spawnSync } from "node:child_process";
import { createWriteStream, mkdirSync, openSync, closeSync } from "node:fs";
import { connect as tcpConnect, createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { createLogger } from "roster-runtime/logger";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const stateDir = process.env.ROSTER_STATE_DIR ?? join(root, ".roster");
const logDir = join(stateDir, "logs");
mkdirSync(logDir, { recursive: true });

const HTTP = process.env.ROSTER_HTTP ?? "127.0.0.1:7700";
const AGENT_API = process.env.ROSTER_AGENT_API ?? "127.0.0.1:7701";
const children = [];
let stopping = false;

const log = createLogger({ name: "roster-stack" });

function say(line) {
  if (line.trim() !== "") log.info(line);
}

function fail(line) {
  log.error(line);
  stopAll(1);
}

function canReach(url, timeoutMs = 500) {
  return new Promise((resolve) => {
    let u;
    try {
      u = new URL(url.includes("://") ? url : `nats://${url}`);
    } catch {
      return resolve(false);
    }
    const sock = tcpConnect({ host: u.hostname, port: Number(u.port || 4222) });
    const done = (ok) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once("connect", () => done(true));
    sock.once("error", () => done(false));
  });
}

function portFree(port) {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

async function pickPort(preferred) {
  if (await portFree(preferred)) return preferred;
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function hasNatsServer() {
  const r = spawnSync("nats-server", ["--version"], { encoding: "utf8" });
  return !r.error && r.status === 0;
}

function ensureNatsServer() {
  if (hasNatsServer()) return;
  const line = "apt-get update && apt-get install -y nats-server";
  if (process.getuid?.() === 0) {
    say(`nats-server is missing: installing it from Debian's packages (${line})`);
    const r = spawnSync("sh", ["-c", `${line} >${join(logDir, "apt.log")} 2>&1`], { stdio: "inherit" });
    if (r.status !== 0 || !hasNatsServer()) fail(`could not install nats-server; see ${join(logDir, "apt.log")}`);
    return;
  }
  process.stderr.write("roster: nats-server is missing. Install it with:\n\n  sudo apt-get update && sudo apt-get install -y nats-server\n\n");
  process.exit(1);
}

function start(name, command, args, extraEnv = {}) {
  const log = createWriteStream(join(logDir, `${name}.log`), { flags: "a" });
  const child = spawn(command, args, {
    cwd: root,
    stdio: ["ignore", "pipe", "pipe"],
    // The children's logs go to files: JSON lines, never pretty.
    env: { ...process.env, ROSTER_LOG_PRETTY: "0", ...extraEnv },
    // Own process group: a terminal Ctrl-C reaches only this script, which then stops the
    // children in order (the agent must still reach NATS to deregister while it drains).
    detached: true,
  });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  child.on("exit", (code, signal) => {
    if (!stopping) fail(`${name} exited unexpectedly (${signal ?? `code ${code}`}); see ${join(logDir, `${name}.log`)}`);
  });
  children.push({ name, child });
  return child;
}

async function waitHttp(url, accept, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && !stopping) {
    try {
      const res = await fetch(url);
      const body = await res.text();
      if (accept(res, body)) return body;
    } catch {
      // not up yet
    }
    await sleep(200);
  }
  if (!stopping) fail(`timed out waiting for ${what} (${url}); logs are in ${logDir}`);
  return "";
}

async function stopAll(code = 0) {
  if (stopping) return;
  stopping = true;
  say("stopping (the agent drains its instances first)...");
  // Reverse start order: agent (drains and deregisters), registry, demo services, nats-server.
  for (const { name, child } of [...children].reverse()) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    await exited;
    clearTimeout(timer);
    say(`${name} stopped`);
  }
  process.exit(code);
}

process.on("SIGINT", () => void stopAll(0));
process.on("SIGTERM", () => void stopAll(0));

// A second `npm start` would fight over ports and the store: keep one per checkout.
try {
  closeSync(openSync(join(stateDir, "stack.lock"), "wx"));
} catch {
  // Stale lock from a crashed run: check whether the registry port is really busy.
  if (!(await portFree(Number(HTTP.split(":")[1])))) {
    log.error(`${HTTP} is in use: is another \`npm start\` running? Stop it or set ROSTER_HTTP.`);
    process.exit(1);
  }
}
process.on("exit", () => {
  try {
    spawnSync("rm", ["-f", join(stateDir, "stack.lock")]);
  } catch {
    // nothing to clean
  }
});

let natsUrl = process.env.ROSTER_NATS_URL;
if (natsUrl && (await canReach(natsUrl))) {
  say(`using the NATS server at ${natsUrl} (ROSTER_NATS_URL)`);
} else {
  if (natsUrl) say(`ROSTER_NATS_URL=${natsUrl} is not reachable: starting a local nats-server instead`);
  ensureNatsServer();
  const port = await pickPort(Number(process.env.ROSTER_NATS_PORT ?? 4222));
  natsUrl = `nats://127.0.0.1:${port}`;
  mkdirSync(join(stateDir, "nats"), { recursive: true });
  start("nats-server", "nats-server", ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", join(stateDir, "nats")]);
  const deadline = Date.now() + 10_000;
  while (!(await canReach(natsUrl))) {
    if (Date.now() > deadline) fail(`nats-server did not start; see ${join(logDir, "nats-server.log")}`);
    await sleep(100);
  }
  say(`nats-server (JetStream, data in .roster/nats) at ${natsUrl}`);
}

if (!(await portFree(Number(HTTP.split(":")[1])))) fail(`${HTTP} is in use: set ROSTER_HTTP to another host:port`);

const env = { ROSTER_NATS_URL: natsUrl };
start("demo-orders", process.execPath, ["examples/demo-service.mjs", "18081", "orders"]);
start("demo-payments", process.execPath, ["examples/demo-service.mjs", "18082", "payments"]);
start("registry", process.execPath, ["registry/bin/roster-registry.js", "--nats", natsUrl, "--http", HTTP], env);
await waitHttp(`http://${HTTP}/readyz`, (res) => res.ok, 20_000, "the registry");
say(`registry at http://${HTTP}`);
start("agent", process.execPath, ["agent/bin/roster-agent.js", "--config", "examples/agent.yaml", "--nats", natsUrl, "--api", AGENT_API], env);
await waitHttp(
  `http://${HTTP}/v1/services/orders/instances?status=passing`,
  (res, body) => res.ok && body.includes('"passing"'),
  20_000,
  "the demo services to pass their checks",
);

say("agent up; demo services orders (127.0.0.1:18081) and payments (127.0.0.1:18082) are passing");
say("");
say(`  services:   curl -s http://${HTTP}/v1/services`);
say(`  instances:  curl -s 'http://${HTTP}/v1/services/orders/instances?status=passing'`);
say(`  watch:      curl -si 'http://${HTTP}/v1/services/orders/instances?index=1&wait=30s'`);
say(`  stream:     curl -N http://${HTTP}/v1/services/orders/stream`);
say(`  dashboard:  http://${HTTP}/ui/      API docs: http://${HTTP}/docs`);
say(`  agent API:  curl -s http://${AGENT_API}/v1/agent/instances`);
say(`  NATS:       ${natsUrl}   logs: ${logDir}`);
say("");
say("Ctrl-C stops everything this command started.");
