#!/usr/bin/env node
// An HTTP upstream whose behaviour a benchmark switches at run time, for fault injection.
//
//   node fault-upstream.mjs <port> [name]      (spawned with an IPC channel: stdio[3] = "ipc")
//
// Answers `/` with a small JSON body and `/health` with 200, on 127.0.0.1:<port> (a fixed
// port, so a killed upstream can be restarted where the catalog expects it). Modes, set by
// an IPC message from the parent and acknowledged with { type: "mode", mode, seq }:
//   { cmd: "mode", mode: "normal" }
//   { cmd: "mode", mode: "503", durationMs }        503 to every path (/health included) for durationMs
//   { cmd: "mode", mode: "slow", delayMs, durationMs } every answer (/health included) delayed by delayMs
// A timed mode returns to normal by itself (duration measured here, so a late IPC message
// cannot stretch it). Faults that need no cooperation (kill -9, SIGSTOP) are done to the
// process by the benchmark. Exits when the parent goes away (IPC disconnect) or on SIGTERM.
import { createServer } from "node:http";

const port = Number(process.argv[2]);
const name = process.argv[3] ?? `up-${port}`;
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  process.stderr.write("usage: fault-upstream.mjs <port> [name]\n");
  process.exit(2);
}

let mode = "normal";
let delayMs = 0;
let revert = null;
const served = { ok: 0, unavailable: 0, health: 0 };

function setMode(next, { delayMs: d = 0, durationMs = 0 } = {}) {
  clearTimeout(revert);
  revert = null;
  mode = next;
  delayMs = next === "slow" ? d : 0;
  if (next !== "normal" && durationMs > 0) {
    revert = setTimeout(() => setMode("normal"), durationMs);
  }
}

const body = Buffer.from(JSON.stringify({ ok: true, upstream: name }));
const unavailable = Buffer.from(JSON.stringify({ ok: false, upstream: name, error: "unavailable" }));

const server = createServer((req, res) => {
  req.resume();
  const answer = () => {
    res.setHeader("x-upstream", name);
    res.setHeader("content-type", "application/json");
    if (mode === "503") {
      served.unavailable++;
      res.statusCode = 503;
      res.setHeader("content-length", unavailable.length);
      res.end(unavailable);
      return;
    }
    if (req.url === "/health") served.health++;
    else served.ok++;
    res.setHeader("content-length", body.length);
    res.end(body);
  };
  if (mode === "slow" && delayMs > 0) setTimeout(answer, delayMs);
  else answer();
});
// Longer than any client's keep-alive: the client closes idle connections, not the server.
server.keepAliveTimeout = 60_000;
server.listen(port, "127.0.0.1", () => {
  process.stdout.write(`listening ${JSON.stringify({ port, name, pid: process.pid })}\n`);
  process.send?.({ type: "ready", port, name, pid: process.pid });
});
server.on("error", (err) => {
  process.stderr.write(`fault-upstream ${name}: ${err.message}\n`);
  process.exit(1);
});

let seq = 0;
process.on("message", (m) => {
  if (m?.cmd === "mode" && ["normal", "503", "slow"].includes(m.mode)) {
    setMode(m.mode, m);
    process.send?.({ type: "mode", mode: m.mode, seq: ++seq });
  } else if (m?.cmd === "stats") {
    process.send?.({ type: "stats", ...served, mode });
  }
});
process.on("disconnect", () => process.exit(0));
process.on("SIGTERM", () => {
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 1000).unref();
});
