// One process of REAL gateway clients for bench/policy.mjs (forked, IPC): `clients` gateways, each
// `createGateway({ nats, services: [service] })` with its own NATS connection, recording when each
// one's policy mirror applies each policy revision, and when its catalog mirror applies each
// catalog revision of the service (a health flip), so both propagate to the same clients. With
// --serving=true each gateway has served the service first (balancers and policy traffic exist).
//   { cmd: "create" } → { type: "synced", at } once every gateway holds the service's policy
//   { cmd: "report" } → { type: "report", times: { [revision]: number[] }, catalogTimes: { [revision]: number[] } }
//   { cmd: "close" }  close every gateway and exit
import { createGateway } from "roster-gateway-client";
import { argvOption as opt } from "./wire-fleet.mjs";

const natsUrl = opt("nats", "nats://127.0.0.1:4222");
const clientCount = Number(opt("clients", 50));
const service = opt("service", "svc-policy");
// Each gateway has served the service: its runtime (balancers) and policy traffic state exist.
const serving = opt("serving", "false") === "true";
const send = (m) => process.send?.(m);
const hiresNow = () => performance.timeOrigin + performance.now();

const gateways = [];
/** revision → times at which a client's policy mirror applied it. */
const times = new Map();
/** catalog revision → times at which a client's catalog mirror applied it (after the engine saw it). */
const catalogTimes = new Map();
let resyncsAtSync = 0;
const record = (into, revision) => {
  const t = hiresNow();
  let list = into.get(revision);
  if (!list) into.set(revision, (list = []));
  list.push(t);
};

process.on("message", async (m) => {
  if (m.cmd === "create") {
    for (let i = 0; i < clientCount; i++) {
      const gw = await createGateway({ nats: natsUrl, services: [service] });
      // Listeners added after createGateway run after the gateway's own (the policy runtime, the
      // engine's balancers): "applied" includes that work.
      gw.mirror.policies.on("change", (s, view) => {
        if (s === service && view) record(times, view.revision);
      });
      gw.on("change", (s, revision) => {
        if (s === service) record(catalogTimes, revision);
      });
      gateways.push(gw);
    }
    await Promise.all(gateways.map((gw) => gw.mirror.policies.waitReady(service, 30_000)));
    if (serving) for (const gw of gateways) await gw.ready(service); // what the first request does
    for (const gw of gateways) resyncsAtSync += gw.mirror.stats.resyncs;
    send({ type: "synced", at: hiresNow(), ready: gateways.filter((gw) => gw.mirror.policies.view(service)).length });
  } else if (m.cmd === "report") {
    let gaps = 0;
    let catalogResyncs = -resyncsAtSync; // the catalog mirrors' resyncs after the first sync (a gap)
    let deltas = 0;
    for (const gw of gateways) {
      gaps += gw.mirror.policies.stats.gaps;
      catalogResyncs += gw.mirror.stats.resyncs;
      deltas += gw.mirror.policies.stats.deltasApplied;
    }
    send({ type: "report", times: Object.fromEntries(times), catalogTimes: Object.fromEntries(catalogTimes), gaps, catalogResyncs, deltas });
  } else if (m.cmd === "close") {
    await Promise.allSettled(gateways.map((gw) => gw.close()));
    process.exit(0);
  }
});
send({ type: "ready" });
