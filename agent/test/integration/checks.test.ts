import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort, waitFor } from "roster-testkit";
import { pino } from "pino";
import type { CheckSpec, HttpCheckSpec } from "../../src/config.js";
import { probeExec } from "../../src/adapters/checks/exec.js";
import { HttpProber } from "../../src/adapters/checks/http.js";
import { CheckScheduler } from "../../src/adapters/checks/scheduler.js";
import { probeTcp } from "../../src/adapters/checks/tcp.js";
import type { CheckResult } from "../../src/core/check.js";

const fixtures = fileURLToPath(new URL("../../../test/fixtures/", import.meta.url));
const silent = pino({ level: "silent" });

function httpSpec(url: string, timeoutMs = 500): HttpCheckSpec {
  return { id: "http-0", type: "http", intervalMs: 1000, timeoutMs, successBeforePassing: 1, failuresBeforeCritical: 2, url, method: "GET", headers: {}, tlsSkipVerify: false };
}

describe("check runners", () => {
  let server: Server;
  let base = "";
  const prober = new HttpProber();

  before(async () => {
    server = createServer((req, res) => {
      if (req.url === "/ok") return res.end("fine");
      if (req.url === "/busy") {
        res.statusCode = 429;
        return res.end();
      }
      if (req.url === "/down") {
        res.statusCode = 503;
        return res.end("down");
      }
      if (req.url === "/hang") return; // never answers
      if (req.url === "/slow-body") {
        res.writeHead(200);
        res.write("partial");
        return; // body never ends
      }
      res.statusCode = 404;
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const addr = server.address();
    base = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
  });

  after(async () => {
    await prober.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it("http - 2xx is passing, 429 warning, 503 and 404 critical", async () => {
    assert.deepEqual(await prober.probe(httpSpec(`${base}/ok`)), { status: "passing", output: "HTTP 200" });
    assert.deepEqual(await prober.probe(httpSpec(`${base}/busy`)), { status: "warning", output: "HTTP 429" });
    assert.deepEqual(await prober.probe(httpSpec(`${base}/down`)), { status: "critical", output: "HTTP 503" });
    assert.deepEqual(await prober.probe(httpSpec(`${base}/nothing`)), { status: "critical", output: "HTTP 404" });
  });

  it("http - the timeout fires against a server that never answers", async () => {
    const t0 = performance.now();
    const r = await prober.probe(httpSpec(`${base}/hang`, 300));
    const took = performance.now() - t0;
    assert.deepEqual(r, { status: "critical", output: "timeout after 300ms" });
    assert.ok(took >= 250 && took < 3000, `took ${took}ms`);
  });

  it("http - the timeout also covers a body that never ends", async () => {
    const t0 = performance.now();
    const r = await prober.probe(httpSpec(`${base}/slow-body`, 300));
    assert.deepEqual(r, { status: "critical", output: "timeout after 300ms" });
    assert.ok(performance.now() - t0 < 3000);
  });

  it("http - a closed port is critical with the error code", async () => {
    const port = await freePort();
    const r = await prober.probe(httpSpec(`http://127.0.0.1:${port}/health`));
    assert.equal(r.status, "critical");
    assert.match(r.output ?? "", /ECONNREFUSED/);
  });

  it("http - stopping aborts a run in flight", async () => {
    const ac = new AbortController();
    const p = prober.probe(httpSpec(`${base}/hang`, 10_000), ac.signal);
    await sleep(50);
    ac.abort();
    assert.deepEqual(await p, { status: "critical", output: "check stopped" });
  });

  it("tcp - a listening port is passing, a closed port critical", async () => {
    const port = Number(new URL(base).port);
    const ok = await probeTcp({ host: "127.0.0.1", port, timeoutMs: 1000 });
    assert.equal(ok.status, "passing");
    const closed = await probeTcp({ host: "127.0.0.1", port: await freePort(), timeoutMs: 1000 });
    assert.equal(closed.status, "critical");
    assert.match(closed.output ?? "", /ECONNREFUSED/);
  });

  it("exec - exit 0 passing, 1 warning, 2 critical, with stdout and stderr in the output", async () => {
    const script = `${fixtures}check-exit.sh`;
    const ok = await probeExec({ command: [script, "0"], cwd: fixtures, timeoutMs: 5000 });
    assert.equal(ok.status, "passing");
    assert.match(ok.output ?? "", /^exit 0\n/);
    assert.match(ok.output ?? "", /stdout line/);
    assert.match(ok.output ?? "", /stderr line/);
    assert.equal((await probeExec({ command: [script, "1"], cwd: fixtures, timeoutMs: 5000 })).status, "warning");
    assert.equal((await probeExec({ command: [script, "2"], cwd: fixtures, timeoutMs: 5000 })).status, "critical");
  });

  it("exec - a relative command runs in cwd, without a shell", async () => {
    const r = await probeExec({ command: ["./check-exit.sh", "0"], cwd: fixtures, timeoutMs: 5000 });
    assert.equal(r.status, "passing");
    const noShell = await probeExec({ command: ["echo $HOME && exit 3"], cwd: fixtures, timeoutMs: 5000 });
    assert.equal(noShell.status, "critical");
    assert.match(noShell.output ?? "", /cannot run .*ENOENT/);
  });

  it("exec - killed at its timeout, grandchildren included", async () => {
    const t0 = performance.now();
    const r = await probeExec({ command: [`${fixtures}check-exit.sh`, "0", "30"], cwd: fixtures, timeoutMs: 300 });
    const took = performance.now() - t0;
    assert.equal(r.status, "critical");
    assert.match(r.output ?? "", /^timeout after 300ms/);
    assert.ok(took < 3000, `took ${took}ms`);
  });

  it("exec - output is the last 1 KiB", async () => {
    const r = await probeExec({ command: [process.execPath, "-e", "process.stdout.write('x'.repeat(5000) + 'END')"], cwd: fixtures, timeoutMs: 5000 });
    assert.equal(r.status, "passing");
    assert.ok((r.output ?? "").length <= 1024);
    assert.ok((r.output ?? "").endsWith("END"));
  });

  it("scheduler - runs each check on its interval and stops cleanly", async () => {
    const results: Array<[string, string, CheckResult]> = [];
    const sched = new CheckScheduler((i, c, r) => results.push([i, c, r]), silent);
    const checks: CheckSpec[] = [
      { ...httpSpec(`${base}/ok`), intervalMs: 100 },
      { id: "tcp-1", type: "tcp", intervalMs: 100, timeoutMs: 500, successBeforePassing: 1, failuresBeforeCritical: 2, host: "127.0.0.1", port: Number(new URL(base).port) },
    ];
    try {
      sched.set("a", checks);
      await waitFor(() => results.filter((r) => r[1] === "http-0").length >= 3 && results.filter((r) => r[1] === "tcp-1").length >= 3, { timeoutMs: 5000, what: "3 runs of each check" });
      assert.ok(results.every(([i, , r]) => i === "a" && r.status === "passing"));
      sched.remove("a");
      const n = results.length;
      await sleep(300);
      assert.ok(results.length <= n + 2, "no run after remove (one in flight at most)");
    } finally {
      await sched.close();
    }
  });

  it("scheduler - ttl: a report goes through at once, silence expires after ttl", async () => {
    const results: Array<[string, string, CheckResult]> = [];
    const sched = new CheckScheduler((i, c, r) => results.push([i, c, r]), silent);
    try {
      sched.set("a", [{ id: "ttl-0", type: "ttl", intervalMs: 0, timeoutMs: 0, ttlMs: 300, successBeforePassing: 1, failuresBeforeCritical: 1 }]);
      assert.equal(sched.report("a", "ttl-0", { status: "passing", output: "ok" }), true);
      assert.deepEqual(results, [["a", "ttl-0", { status: "passing", output: "ok" }]]);
      assert.equal(sched.report("a", "nope", { status: "passing" }), false);
      const t0 = performance.now();
      await waitFor(() => results.length === 2, { timeoutMs: 3000, what: "ttl expiry" });
      assert.ok(performance.now() - t0 >= 250);
      assert.equal(results[1]![2].status, "critical");
      assert.match(results[1]![2].output ?? "", /TTL expired/);
    } finally {
      await sched.close();
    }
  });
});
