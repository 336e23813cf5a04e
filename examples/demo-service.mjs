#!/usr/bin/env node
// A tiny demo service: `node examples/demo-service.mjs <port> [name]`.
//   GET /health → 200 "ok"          GET / → {"service","port","pid"}
// Listens on 127.0.0.1 unless DEMO_HOST says otherwise (the compose stack sets 0.0.0.0).
// Exits cleanly (code 0) on SIGTERM/SIGINT.
import { createServer } from "node:http";

const port = Number(process.argv[2] ?? 18081);
const service = process.argv[3] ?? process.env.SERVICE_NAME ?? `demo-${port}`;
const host = process.env.DEMO_HOST ?? "127.0.0.1";
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  process.stderr.write(`demo-service: bad port "${process.argv[2]}"\n`);
  process.exit(1);
}

const server = createServer((req, res) => {
  if (req.url === "/health") {
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("ok\n");
    return;
  }
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify({ service, port, pid: process.pid }) + "\n");
});
server.keepAliveTimeout = 5000;
server.listen(port, host, () => {
  process.stdout.write(`demo-service ${service} listening on ${host}:${port} (pid ${process.pid})\n`);
});
server.on("error", (err) => {
  process.stderr.write(`demo-service: ${err.message}\n`);
  process.exit(1);
});

function stop(signal) {
  process.stdout.write(`demo-service ${service}: ${signal}, stopping\n`);
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));
