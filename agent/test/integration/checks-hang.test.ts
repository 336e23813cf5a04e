// A hung target (SIGSTOP) whose accept queue is full: new connections stay in SYN-SENT, undici's
// request waits for a connect that never completes, and aborting its signal does not settle it.
// The http check must still answer `critical` at its own timeout, not at undici's connect timeout.
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { ChildProc } from "roster-testkit";
import type { HttpCheckSpec } from "../../src/config.js";
import { HttpProber } from "../../src/adapters/checks/http.js";

// A listener with the smallest backlog, printing its port; it is stopped before anything is accepted.
const HUNG_SERVER = `
const net = require("node:net");
const srv = net.createServer(() => {});
srv.listen({ port: 0, host: "127.0.0.1", backlog: 1 }, () => console.log("port=" + srv.address().port));
`;

describe("http check against a hung target", () => {
  let server: ChildProc;
  let port = 0;
  const fillers: Socket[] = [];
  const prober = new HttpProber();

  before(async () => {
    server = new ChildProc(process.execPath, ["-e", HUNG_SERVER]);
    await server.waitForOutput(/port=\d+/);
    port = Number(/port=(\d+)/.exec(server.output)![1]);
    process.kill(server.pid, "SIGSTOP");
    // Fill the accept queue: the first connections complete into it, later ones hang in SYN-SENT.
    for (let i = 0; i < 8; i++) {
      const s = connect({ host: "127.0.0.1", port });
      s.on("error", () => {});
      fillers.push(s);
    }
    await sleep(200);
  });

  after(async () => {
    for (const s of fillers) s.destroy();
    try {
      process.kill(server.pid, "SIGCONT");
    } catch {
      // gone
    }
    server.kill("SIGKILL");
    await server.exited;
    await prober.close();
  });

  it("http check - times out at its own timeout while the connect hangs", async () => {
    const spec: HttpCheckSpec = {
      id: "http-0",
      type: "http",
      intervalMs: 1000,
      timeoutMs: 300,
      successBeforePassing: 1,
      failuresBeforeCritical: 1,
      url: `http://127.0.0.1:${port}/health`,
      method: "GET",
      headers: {},
      tlsSkipVerify: false,
    };
    const started = Date.now();
    const results = await Promise.all([prober.probe(spec), prober.probe(spec), prober.probe(spec)]);
    const elapsed = Date.now() - started;
    for (const r of results) assert.deepEqual(r, { status: "critical", output: "timeout after 300ms" });
    assert.ok(elapsed < 300 + 1000, `took ${elapsed}ms for a 300ms timeout`);
  });
});
