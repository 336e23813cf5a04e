#!/usr/bin/env node
// What the registry's catalog holds per instance on the V8 heap: the state machine
// (registry/src/core/catalog.ts) and the KV-confirmed memory (catalog-memory.ts) after `hosts`
// registers of `instances` each (decoded with the wire schema, as ingest does), measured as heap
// used after two forced GCs, before and after; then the same catalog as a restarted registry (or a
// new writer) holds it: every record's KV bytes decoded as the store's load does, with the values
// shared (core/intern.ts, as the store does) and, for comparison, without. No NATS, no KV: the data structures alone, which
// are what stays of a registration storm (bench/registry-load.mjs measures the whole process's
// RSS, where V8's heap sizing and the young generation add to this).
//
//   node bench/catalog-memory.mjs [--hosts=1000] [--instances=100]
//
// Needs `npm run build` first.
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { CatalogInstance, RegisterMessage, catalogInstanceJson, decode, encode } from "roster-schemas";
import { CatalogState } from "../registry/dist/src/core/catalog.js";
import { Interner } from "../registry/dist/src/core/intern.js";
import { CatalogMemory } from "../registry/dist/src/adapters/store/catalog-memory.js";
import { numberOption } from "./lib/options.mjs";

// A forced GC without --expose-gc on the command line (npm run bench starts scripts plainly).
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc");
const HOSTS = numberOption("hosts", 1000);
const PER = numberOption("instances", 100);
const epoch = Date.now();

// The messages as a fleet sends them (bytes), built before the first measurement.
const messages = [];
for (let h = 0; h < HOSTS; h++) {
  const instances = [];
  for (let s = 0; s < PER; s++) {
    instances.push({
      id: `h${h}-s${s}`, service: `svc-${String(s).padStart(3, "0")}`, address: `10.${h >> 8}.${h & 255}.${s}`, port: 20_000 + s,
      zone: `zone-${h % 3}`, tags: ["bench"], meta: {}, weight: 100, status: "passing",
      checks: [{ id: "http-0", type: "http", status: "passing", since: epoch }],
    });
  }
  messages.push(encode(RegisterMessage, { v: 1, kind: "register", hostId: `sim-h${h}`, epoch, seq: 1, sentAt: epoch, zone: `zone-${h % 3}`, heartbeatIntervalMs: 1000, instances }));
}

const heapUsed = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};
const before = heapUsed();
const OPTS = { heartbeatTimeoutMultiplier: 3, deregisterAfterMs: 60_000, selfPreservation: { threshold: 0.3, minHosts: 3 }, assumedHeartbeatIntervalMs: 1000 };
const core = new CatalogState(OPTS);
const memory = new CatalogMemory();
let revision = 0;
for (const m of messages) {
  const r = decode(RegisterMessage, m);
  if (!r.ok) throw new Error(r.error);
  for (const e of core.handle(r.value, Date.now())) if (e.type === "put") memory.apply(e.record.service, e.record.id, ++revision, e.record);
}
for (let h = 0; h < HOSTS; h++) core.digestOf(`sim-h${h}`); // the digests every heartbeat is compared with
const after = heapUsed();
const n = HOSTS * PER;
console.log(`catalog-memory: ${HOSTS} hosts x ${PER} instances (${n}); node ${process.version}`);
console.log(`heap used by the catalog (state machine + memory): ${((after - before) / 1048576).toFixed(1)} MiB, ${Math.round((after - before) / n)} bytes per instance`);
if (memory.revision !== n) throw new Error(`expected ${n} records, memory holds revision ${memory.revision}`);

// A restart: the records as KV holds them (bytes), then loaded into a new state machine and memory.
const te = new TextEncoder();
const stored = memory.all().map((r) => te.encode(catalogInstanceJson(r)));
/** Heap used by a catalog loaded from `stored`; `share`: values shared as the store does. */
function loadedHeap(share) {
  const base = heapUsed();
  const interner = new Interner();
  const loadedCore = new CatalogState({ ...OPTS, interner });
  const loadedMemory = new CatalogMemory();
  const records = [];
  let rev = 0;
  for (const bytes of stored) {
    const r = decode(CatalogInstance, bytes);
    if (!r.ok) throw new Error(r.error);
    const record = share ? interner.record(r.value) : r.value;
    loadedMemory.load(record.service, record.id, ++rev, record);
    records.push(record);
  }
  loadedCore.loaded(records, Date.now());
  records.length = 0;
  for (let h = 0; h < HOSTS; h++) loadedCore.digestOf(`sim-h${h}`);
  const used = heapUsed() - base;
  if (loadedMemory.instanceCount !== n || loadedCore.digestOf("sim-h0") === undefined) throw new Error("load incomplete");
  return used;
}
const plain = loadedHeap(false);
const shared = loadedHeap(true);
console.log(`after a restart (records loaded from KV): ${Math.round(shared / n)} bytes per instance with values shared; ${Math.round(plain / n)} each record its own copies`);

