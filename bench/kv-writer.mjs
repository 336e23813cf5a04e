#!/usr/bin/env node
// The registry's catalog writer alone (registry/src/adapters/store/kv-catalog.ts over
// stream-writer.ts), in this process against a real nats-server with JetStream: N writes queued at
// once over S services, until every one is acked. Prints writes/s and this process's CPU per write
// (encode, publish the write and its delta, memory, the ack). What a registration storm costs the
// registry beyond ingest and the state machine.
//
//   node bench/kv-writer.mjs [--writes=100000] [--services=100] [--rounds=3]
//
// Needs `npm run build` first.
import { connect } from "@nats-io/transport-node";
import { NatsServer } from "roster-testkit";
import pino from "pino";
import { CatalogMemory } from "../registry/dist/src/adapters/store/catalog-memory.js";
import { KvCatalog } from "../registry/dist/src/adapters/store/kv-catalog.js";
import { machineInfo } from "./lib/table.mjs";
import { numberOption } from "./lib/options.mjs";

const WRITES = numberOption("writes", 100_000);
const SERVICES = numberOption("services", 100);
const ROUNDS = numberOption("rounds", 3);

const record = (id, service) => ({
  id, service, host: `h-${id}`, address: "10.0.0.1", port: 8080, tags: ["v1", "blue"], meta: { team: "orders" }, weight: 100,
  status: "passing", checks: [{ id: "http-0", type: "http", status: "passing", since: 1 }], epoch: 1, registeredAt: 1, updatedAt: 2,
});

const nats = await NatsServer.start();
const nc = await connect({ servers: nats.url });
try {
  const m = machineInfo();
  console.log(`kv-writer: ${WRITES} writes over ${SERVICES} services, ${ROUNDS} rounds; node ${m.node}, nats-server ${m.natsServer}, load ${m.loadavg}`);
  for (let round = 1; round <= ROUNDS; round++) {
    const store = await KvCatalog.open(nc, new CatalogMemory(), { replicas: 1, retryForMs: 30_000, logger: pino({ level: "warn" }) });
    await store.load();
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    for (let i = 0; i < WRITES; i++) {
      const service = `svc-${round}-${i % SERVICES}`;
      store.enqueue(service, `i${i}`, record(`i${i}`, service));
    }
    if (!(await store.flush(300_000))) throw new Error("writes did not settle in 300 s");
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    console.log(`round ${round}: ${Math.round((WRITES / ms) * 1000)} writes/s, ${((cpu.user + cpu.system) / WRITES).toFixed(1)} µs CPU/write, peak in flight ${store.stats.peakInFlight}, replayed ${store.stats.replayed}`);
    await store.flush(1000, true);
  }
} finally {
  await nc.close();
  await nats.close();
}
