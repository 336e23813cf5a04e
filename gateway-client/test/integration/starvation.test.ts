// The caller's own event loop blocked past a try's timeout (CPU starvation, a long synchronous
// task): Node runs expired timers before it reads the sockets, so without care the try's
// timer fires while the answer sits unread in the socket, every such try "times out", its
// retry adds load and spends the budget (the collapse seen in `chaos --quick` under load).
// The answer that already arrived must win: no retry, no failure against the endpoint. The
// upstreams are child processes, so they answer while this process is blocked.
import { after, afterEach, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { request as undiciRequest } from "undici";
import { ChildProc, NatsServer, freePort, waitFor } from "roster-testkit";
import { createGateway, TryTimeoutError, type Gateway } from "../../src/index.js";
import { FakeRegistry, makeInstance, silent } from "./helpers.js";

const TRY_TIMEOUT_MS = 250;
const BLOCK_MS = 400;

/** A node:http upstream in a child process: `/` after 5 ms, `/hang` never. */
const UPSTREAM = `
const http = require("node:http");
const [port, name] = process.argv.slice(1);
http.createServer((req, res) => {
  req.resume();
  if (req.url === "/hang") return;
  setTimeout(() => { res.setHeader("x-upstream", name); res.end("ok from " + name); }, 5);
}).listen(Number(port), "127.0.0.1", () => console.log("listening"));
process.on("SIGTERM", () => process.exit(0));
`;

/** Blocks this process's event loop. */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // spin
  }
}

describe("gateway under caller loop starvation", () => {
  let nats: NatsServer;
  let reg: FakeRegistry;
  const ups: ChildProc[] = [];
  const service = "starved";
  let gw: Gateway | undefined;

  before(async () => {
    nats = await NatsServer.start({ jetstream: false });
    reg = await FakeRegistry.start(nats.url);
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      const name = `${service}-u${i}`;
      const up = new ChildProc(process.execPath, ["-e", UPSTREAM, String(port), name]);
      ups.push(up);
      await up.waitForOutput("listening");
      reg.put(makeInstance(service, name, port));
    }
  });
  after(async () => {
    for (const up of ups) await up.stop();
    await reg.close();
    await nats.close();
  });
  afterEach(async () => {
    await gw?.close();
    gw = undefined;
  });

  async function gateway(): Promise<Gateway> {
    gw = await createGateway({ nats: nats.url, services: [service], logger: silent, tryTimeout: TRY_TIMEOUT_MS, deadline: 2000, maxRetries: 2 });
    await waitFor(() => gw!.instances(service).length === 2, { timeoutMs: 5000, what: "the instances" });
    // Open a connection to each instance, so the request below is written at once.
    for (let i = 0; i < 6; i++) await (await gw.request(service)).body.text();
    return gw;
  }

  function failures(g: Gateway): number {
    return g.stats(service)!.endpoints.reduce((n, e) => n + e.failures + e.ejections, 0);
  }

  test("request(): the answer that arrived while the loop was blocked wins over the late timer", async () => {
    const g = await gateway();
    const before = g.stats(service)!;
    const p = g.request(service);
    // The request is on the wire; the upstream answers in 5 ms while this loop spins 400 ms.
    setImmediate(() => busy(BLOCK_MS));
    const res = await p;
    assert.equal(res.statusCode, 200);
    assert.match(await res.body.text(), /^ok from /);
    const now = g.stats(service)!;
    assert.equal(now.tries - before.tries, 1, "one try, no retry");
    assert.equal(now.retries - before.retries, 0);
    assert.equal(failures(g), 0, "no failure or ejection against the endpoint");
    assert.ok(g.timeouts.answeredInGrace >= 1, "the answer was read in the grace turn");
  });

  test("dispatcher: the same through undici's request with gw.dispatcher", async () => {
    const g = await gateway();
    const before = g.stats(service)!;
    const p = undiciRequest(`http://${service}/`, { dispatcher: g.dispatcher });
    setImmediate(() => busy(BLOCK_MS));
    const res = await p;
    assert.equal(res.statusCode, 200);
    assert.match(await res.body.text(), /^ok from /);
    const now = g.stats(service)!;
    assert.equal(now.tries - before.tries, 1, "one try, no retry");
    assert.equal(now.retries - before.retries, 0);
    assert.equal(failures(g), 0, "no failure or ejection against the endpoint");
  });

  test("a hung instance still times out: the stolen time is granted once, then the timeout counts", async () => {
    const g = await gateway();
    const t0 = performance.now();
    const p = g.request(service, { path: "/hang", maxRetries: 0 }).then(
      () => assert.fail("a hung upstream answered"),
      (err: unknown) => err,
    );
    setImmediate(() => busy(BLOCK_MS));
    const err = await p;
    const took = performance.now() - t0;
    assert.ok(err instanceof TryTimeoutError, `got ${String(err)}`);
    assert.ok(g.timeouts.lagExtended >= 1, "the late timer granted the stolen time");
    // Due at 250 ms, fired at ~400 (150 late): ~150 ms more, then the timeout stands.
    assert.ok(took >= BLOCK_MS + 100, `timed out after ${took.toFixed(0)} ms: no extension`);
    assert.ok(took < 1500, `timed out after ${took.toFixed(0)} ms`);
    assert.equal(g.stats(service)!.endpoints.reduce((n, e) => n + e.failures, 0), 1, "the real timeout counts against the endpoint");
  });
});
