// One process of REAL gateway clients for bench/policy.mjs (forked, IPC): `clients` gateways, each
// `createGateway({ nats, services: [service] })` with its own NATS connection, recording when each
// one's policy mirror applies each policy revision.
//   { cmd: "create" } → { type: "synced", at } once every gateway holds the service's policy
//   { cmd: "report" } → { type: "report", times: { [revision]: number[] } }
//   { cmd: "close" }  close every gateway and exit
import { createGateway } from "roster-gateway-client";
import { argvOption as opt } from "./wire-fleet.mjs";

const natsUrl = opt("nats", "nats://127.0.0.1:4222");
const clientCount = Number(opt("clients", 50));
const service = opt("service", "svc-policy");
const send = (m) => process.send?.(m);
const hiresNow = () => performance.timeOrigin + performance.now();

const gateways = [];
/** revision → times at which a client's policy mirror applied it. */
const times = new Map();

process.on("message", async (m) => {
  if (m.cmd === "create") {
    for (let i = 0; i < clientCount; i++) {
      const gw = await createGateway({ nats: natsUrl, services: [service] });
      gw.mirror.policies.on("change", (s, view) => {
        if (s !== service || !view) return;
        const t = hiresNow();
        let list = times.get(view.revision);
        if (!list) times.set(view.revision, (list = []));
        list.push(t);
      });
      gateways.push(gw);
    }
    await Promise.all(gateways.map((gw) => gw.mirror.policies.waitReady(service, 30_000)));
    send({ type: "synced", at: hiresNow(), ready: gateways.filter((gw) => gw.mirror.policies.view(service)).length });
  } else if (m.cmd === "report") {
    let gaps = 0;
    let deltas = 0;
    for (const gw of gateways) {
      gaps += gw.mirror.policies.stats.gaps;
      deltas += gw.mirror.policies.stats.deltasApplied;
    }
    send({ type: "report", times: Object.fromEntries(times), gaps, deltas });
  } else if (m.cmd === "close") {
    await Promise.allSettled(gateways.map((gw) => gw.close()));
    process.exit(0);
  }
});
send({ type: "ready" });
