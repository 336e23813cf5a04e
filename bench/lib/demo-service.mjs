#!/usr/bin/env node
// A minimal HTTP service for benchmarks: `node demo-service.mjs <port>` answers 200 on
// every path (the agent's http check hits /health). Killed with SIGKILL by the benchmark.
import { createServer } from "node:http";

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  process.stderr.write("usage: demo-service.mjs <port>\n");
  process.exit(2);
}
const server = createServer((req, res) => {
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify({ ok: true, port, path: req.url }));
});
server.listen(port, "127.0.0.1", () => process.stdout.write(`listening on ${port}\n`));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
process.on("disconnect", () => process.exit(0));
