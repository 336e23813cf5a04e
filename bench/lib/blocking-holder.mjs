#!/usr/bin/env node
// Holds many blocking queries open against the registry, from its own process (forked, IPC):
// `count` concurrent `GET <url>?index=<index>&wait=<wait>` on as many connections (undici Agent,
// one request per connection, no pipelining). Used by bench/catalog-http.mjs to measure what
// open blocking queries cost the registry.
//
// Options (argv `--name=value`): url, index, wait (e.g. 120s), count.
// Parent → child: { cmd: "open" } → { type: "opened", sent } once every request is dispatched;
//                 { cmd: "close" } aborts them all and exits.
// Child → parent: { type: "ready" }, { type: "answered", n } (answers that came back early).
import { setMaxListeners } from "node:events";
import { Agent, request } from "undici";
import { argvOption as opt } from "./wire-fleet.mjs";

const url = opt("url", "");
const index = opt("index", "1");
const wait = opt("wait", "120s");
const count = Number(opt("count", 1000));
const send = (m) => process.send?.(m);

const dispatcher = new Agent({ connections: count + 16, pipelining: 1, headersTimeout: 0, bodyTimeout: 0, keepAliveTimeout: 600_000, connect: { timeout: 30_000 } });
const ac = new AbortController();
setMaxListeners(0, ac.signal); // one signal for every held request
let answered = 0;
let failed = 0;

process.on("message", async (m) => {
  if (m?.cmd === "open") {
    let sent = 0;
    for (let i = 0; i < count; i++) {
      request(`${url}?index=${index}&wait=${wait}`, { dispatcher, signal: ac.signal })
        .then(async (res) => {
          await res.body.dump();
          answered++;
        })
        .catch(() => {
          if (!ac.signal.aborted) failed++;
        });
      sent++;
      // Let the event loop open connections in batches rather than 10,000 connects at once.
      if (i % 500 === 499) await new Promise((r) => setTimeout(r, 20));
    }
    send({ type: "opened", sent, answered, failed });
  } else if (m?.cmd === "status") {
    send({ type: "status", answered, failed });
  } else if (m?.cmd === "close") {
    ac.abort();
    await dispatcher.destroy().catch(() => {});
    process.exit(0);
  }
});
process.on("disconnect", () => process.exit(0));
send({ type: "ready" });
