#!/usr/bin/env node
// HTTP blocking-query watchers in their own process (forked, IPC), for bench/gateway-fanout.mjs:
// `count` loops, each `GET <url>?status=any&index=<last X-Roster-Index>&wait=<wait>` back to
// back on its own connection, recording when each answer arrived (performance.timeOrigin +
// now, ms) and the index it carried. Bodies are read and dropped, not parsed: the index says
// which revision of the service the answer reflects.
//
// Options (argv `--name=value`): url, count, wait (e.g. 30s).
// Parent → child: { cmd: "start" }, { cmd: "report" } → { type: "report", arrivals: [[index, t], ...][] },
//                 { cmd: "close" }.
// Child → parent: { type: "ready" }, { type: "started" } (every watcher has its first index).
import { setMaxListeners } from "node:events";
import { Agent, request } from "undici";
import { argvOption as opt } from "./wire-fleet.mjs";

const url = opt("url", "");
const count = Number(opt("count", 10));
const wait = opt("wait", "30s");
const send = (m) => process.send?.(m);
const hiresNow = () => performance.timeOrigin + performance.now();

const dispatcher = new Agent({ connections: count + 4, pipelining: 1, headersTimeout: 0, bodyTimeout: 0, keepAliveTimeout: 120_000 });
const ac = new AbortController();
setMaxListeners(0, ac.signal);
const arrivals = Array.from({ length: count }, () => []);
let started = 0;
let errors = 0;

async function loop(k) {
  let index = 0;
  while (!ac.signal.aborted) {
    try {
      const q = index > 0 ? `?status=any&index=${index}&wait=${wait}` : "?status=any";
      const res = await request(url + q, { dispatcher, signal: ac.signal });
      await res.body.dump();
      const t = hiresNow();
      const idx = Number(res.headers["x-roster-index"]);
      if (res.statusCode === 200 && Number.isFinite(idx)) {
        if (index === 0 && ++started === count) send({ type: "started" });
        if (index > 0) arrivals[k].push([idx, t]);
        index = idx;
      } else {
        errors++;
        await new Promise((r) => setTimeout(r, 100));
      }
    } catch {
      if (ac.signal.aborted) return;
      errors++;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

process.on("message", async (m) => {
  if (m?.cmd === "start") {
    for (let k = 0; k < count; k++) void loop(k);
  } else if (m?.cmd === "report") {
    send({ type: "report", arrivals, errors });
  } else if (m?.cmd === "close") {
    ac.abort();
    await dispatcher.destroy().catch(() => {});
    process.exit(0);
  }
});
process.on("disconnect", () => process.exit(0));
send({ type: "ready" });
