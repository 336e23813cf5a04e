#!/usr/bin/env node
// Event-stream flood: N clients open GET /v1/stream and never read. What does each cost the
// registry? Before (issue "Secure by default", attack 5) each held its own copy of the first
// snapshot, exempt from the slow-client limit; now the bytes held per stream are capped at
// streams.maxBufferedBytes (the snapshot is shared and handed over as the client reads).
//
//   node bench/sse-flood.mjs [--quick] [--steps=0,10,20,40,80] [--hosts=30] [--instances=100]
//        [--registry-bin=<other build's registry/bin/roster-registry.js>] [--legacy-config]
//
// Real processes: nats-server (test kit), roster-registry (its bin). The catalog is `hosts` x
// `instances` instances with ~2 kB of meta each (~6.5 MB of snapshot at 30 x 100), registered over
// NATS with the real wire contract. Clients are raw TCP sockets in this process: each sends the
// request, reads the status line, then pauses (never reads again). RSS is read from /proc, the
// median of 3 samples after each step. `--legacy-config` leaves out the config fields an older
// registry does not know (streams.maxPerClient, streams.maxBufferedBytes).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { connect } from "@nats-io/transport-node";
import { NatsServer, waitFor } from "roster-testkit";
import { RegisterMessage, agentSubject, encode } from "roster-schemas";
import { closeHttp, getJson } from "./lib/http.mjs";
import { progress } from "./lib/log.mjs";
import { commandLine, numberOption, stringOption } from "./lib/options.mjs";
import { rssMiB } from "./lib/procstat.mjs";
import { startRegistry, REGISTRY_BIN } from "./lib/registry.mjs";
import { defer, runBench } from "./lib/run.mjs";
import { fmt } from "./lib/stats.mjs";
import { printReport } from "./lib/table.mjs";

const quick = process.argv.includes("--quick") || Boolean(process.env.BENCH_QUICK);
const legacy = process.argv.includes("--legacy-config");
const STEPS = stringOption("steps", quick ? "0,10,30" : "0,10,20,40,80").split(",").map(Number);
const HOSTS = numberOption("hosts", quick ? 10 : 30);
const PER_HOST = numberOption("instances", 100);
const BIN = stringOption("registry-bin", REGISTRY_BIN);
const MAX_BUFFERED = 1 << 20;
const CAP = Math.max(...STEPS);
const meta = Object.fromEntries(Array.from({ length: 4 }, (_, i) => [`k${i}`, "x".repeat(500)]));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** A client that sends the request, reads the status line, then never reads again. */
function stalledClient(httpUrl) {
  const url = new URL(httpUrl);
  return new Promise((resolve, reject) => {
    const sock = tcpConnect(Number(url.port), url.hostname);
    const c = { sock, status: 0, closedByServer: false };
    sock.once("error", reject);
    sock.once("data", (d) => {
      c.status = Number(/^HTTP\/1\.1 (\d{3})/.exec(d.toString("latin1", 0, 64))?.[1] ?? 0);
      sock.pause();
      resolve(c);
    });
    sock.once("close", () => (c.closedByServer = true));
    sock.write("GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  });
}

await runBench("sse-flood", 600, async () => {
  const dir = mkdtempSync(join(tmpdir(), "roster-sse-flood-"));
  defer(() => rmSync(dir, { recursive: true, force: true }));
  const nats = await NatsServer.start();
  defer(() => nats.close());
  const config = join(dir, "registry.json");
  writeFileSync(config, JSON.stringify(legacy ? { streams: { maxOpen: CAP + 10 } } : { streams: { maxOpen: CAP + 10, maxPerClient: CAP, maxBufferedBytes: MAX_BUFFERED } }));
  const registry = await startRegistry({ natsUrl: nats.url, args: ["--config", config], bin: BIN });
  defer(() => registry.stop());
  const nc = await connect({ servers: nats.url });
  defer(() => nc.close());
  progress(`registering ${HOSTS * PER_HOST} instances`);
  for (let h = 0; h < HOSTS; h++) {
    const instances = Array.from({ length: PER_HOST }, (_, i) => ({
      id: `i-${h}-${i}`, service: `svc-${h % 10}`, address: "127.0.0.2", port: 8000 + i, tags: [], meta, weight: 100, status: "passing", checks: [],
    }));
    nc.publish(agentSubject(`flood-${h}`, "register"), encode(RegisterMessage, { v: 1, kind: "register", hostId: `flood-${h}`, epoch: Date.now(), seq: 1, sentAt: Date.now(), heartbeatIntervalMs: 60_000, instances }));
  }
  await nc.flush();
  await waitFor(async () => (await getJson(`${registry.httpUrl}/v1/status`)).body?.instances === HOSTS * PER_HOST, { timeoutMs: 300_000, intervalMs: 500, what: "catalog registered" });
  // One reading client first: the snapshot is then encoded (and, after, cached) before the baseline.
  const snap = await fetch(`${registry.httpUrl}/v1/catalog`).then((r) => r.arrayBuffer());
  const snapshotMiB = snap.byteLength / 1048576;
  await sleep(2000);

  const clients = [];
  defer(() => clients.forEach((c) => c.sock.destroy()));
  const rows = [];
  let base = null;
  for (const n of STEPS) {
    while (clients.length < n) clients.push(await stalledClient(registry.httpUrl));
    await sleep(3000);
    const samples = [];
    for (let i = 0; i < 3; i++, await sleep(300)) samples.push(rssMiB(registry.pid));
    const rss = median(samples);
    base ??= rss;
    const accepted = clients.filter((c) => c.status === 200).length;
    const open = clients.filter((c) => c.status === 200 && !c.closedByServer).length;
    const refused = clients.filter((c) => c.status !== 200).length;
    rows.push([n, fmt(rss, 0), fmt(rss - base, 0), n ? fmt((rss - base) / n, 2) : "-", accepted, open, refused]);
    progress(`N=${n}: RSS ${fmt(rss, 0)} MiB`);
  }
  const last = rows[rows.length - 1];
  printReport({
    title: `Event-stream flood: N clients open /v1/stream and never read (${HOSTS * PER_HOST} instances, ${fmt(snapshotMiB, 1)} MiB catalog)`,
    command: commandLine("bench/sse-flood.mjs"),
    params: { hosts: HOSTS, instancesPerHost: PER_HOST, steps: STEPS.join(","), registry: BIN === REGISTRY_BIN ? "this tree" : BIN, config: legacy ? "streams.maxOpen only (older registry)" : `streams.maxPerClient=${CAP}, streams.maxBufferedBytes=${MAX_BUFFERED}` },
    figures: { rows, snapshotMiB, perClientMiB: Number(last[3]) },
    tables: [
      {
        caption: "registry RSS (median of 3 samples, 3 s after each step) against the number of non-reading streams",
        headers: ["N streams", "RSS MiB", "Δ vs N=0 MiB", "Δ per stream MiB", "accepted (200)", "still open", "refused"],
        rows,
      },
    ],
    notes: [
      "A non-reading client stays open while the kernel holds what was sent (loopback socket buffers, not in the registry's RSS); what the registry holds for it is capped at streams.maxBufferedBytes. A stream that reads nothing of its snapshot for a whole heartbeat period (15 s) is dropped.",
      "The machine is shared (2 cores, other work running): RSS is not CPU-bound, but GC timing varies; compare the per-stream slope, not single MiB.",
    ],
  });
  await closeHttp();
});
