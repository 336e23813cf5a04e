// The roster-registry command line, as a real process.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, it } from "node:test";
import { freePort, metricValue, scrape, spawnNode } from "roster-testkit";

const BIN = join(resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..", ".."), "bin", "roster-registry.js");

describe("registry cli", () => {
  it("cli - --help prints the usage and exits 0", async () => {
    const p = spawnNode(BIN, ["--help"]);
    const exit = await p.exited;
    assert.equal(exit.code, 0);
    assert.match(p.output, /usage: roster-registry/);
  });

  it("cli - --version prints the package's version and exits 0", async () => {
    const p = spawnNode(BIN, ["--version"]);
    assert.equal((await p.exited).code, 0);
    const { version } = JSON.parse(readFileSync(join(BIN, "..", "..", "package.json"), "utf8")) as { version: string };
    assert.equal(p.output.split(" (")[0], `roster-registry ${version}`);
  });

  it("cli - an unknown flag exits 1 naming it", async () => {
    const p = spawnNode(BIN, ["--htpp", "127.0.0.1:1"]);
    assert.equal((await p.exited).code, 1);
    assert.match(p.output, /argv: unknown flag --htpp/);
    assert.doesNotMatch(p.output, /\n\s+at /);
  });

  it("cli - reads a YAML config (compound durations too) and names a bad value in it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "roster-registry-yaml-"));
    try {
      const http = `127.0.0.1:${await freePort()}`;
      const good = join(dir, "registry.yaml");
      writeFileSync(good, `# YAML, as the agent's config\nhttp:\n  listen: "${http}"\nderegisterAfter: 1m30s\nnats:\n  url: nats://127.0.0.1:${await freePort()}\n`);
      const p = spawnNode(BIN, ["--config", good], { env: { ...process.env, ROSTER_LOG_LEVEL: "info", ROSTER_LOG_PRETTY: "0" } });
      try {
        await p.waitForOutput("NATS not reachable, retrying");
        assert.equal((await fetch(`http://${http}/healthz`)).status, 200, "listens where the YAML file says");
      } finally {
        await p.stop();
      }
      const bad = join(dir, "bad.yaml");
      writeFileSync(bad, "deregisterAfter: 30s1m\n");
      const b = spawnNode(BIN, ["--config", bad]);
      assert.equal((await b.exited).code, 1);
      assert.match(b.output, /deregisterAfter: expected a duration/);
      const broken = join(dir, "broken.yaml");
      writeFileSync(broken, "http: [unclosed\n");
      const c = spawnNode(BIN, ["--config", broken]);
      assert.equal((await c.exited).code, 1);
      assert.match(c.output, /broken\.yaml is not a YAML object/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("cli - a bad flag exits 1 naming it, without a stack trace", async () => {
    const p = spawnNode(BIN, ["--http", "nonsense"]);
    const exit = await p.exited;
    assert.equal(exit.code, 1);
    assert.match(p.output, /http\.listen: expected "host:port"/);
    assert.doesNotMatch(p.output, /\n\s+at /);
  });

  it("cli - the process logs JSON without the NATS password, and serves /metrics with process metrics", async () => {
    const http = `127.0.0.1:${await freePort()}`;
    const natsPort = await freePort(); // nothing listens there: the registry keeps retrying and says so
    const p = spawnNode(BIN, ["--nats", `nats://alice:s3cret-pw@127.0.0.1:${natsPort}`, "--http", http], { env: { ...process.env, ROSTER_LOG_LEVEL: "info", ROSTER_LOG_PRETTY: "0" } });
    try {
      await p.waitForOutput("NATS not reachable, retrying");
      const m = await scrape(`http://${http}/metrics`);
      assert.equal(metricValue(m, "roster_registry_nats_connected"), 0);
      assert.ok(metricValue(m, "process_cpu_user_seconds_total") !== undefined, "the process exports Node's process metrics");
      const lines = p.output.trim().split("\n").map((l) => JSON.parse(l) as { msg: string; url?: string; service?: string });
      const retry = lines.find((l) => l.msg === "NATS not reachable, retrying");
      assert.equal(retry?.url, `nats://***@127.0.0.1:${natsPort}`);
      assert.equal(retry?.service, "roster-registry");
      assert.ok(!p.output.includes("s3cret-pw"), "the password never reaches the log");
    } finally {
      await p.stop();
    }
  });

  it("cli - an unknown ROSTER_LOG_LEVEL exits 1 naming it", async () => {
    const p = spawnNode(BIN, [], { env: { ...process.env, ROSTER_LOG_LEVEL: "chatty" } });
    const exit = await p.exited;
    assert.equal(exit.code, 1);
    assert.match(p.output, /ROSTER_LOG_LEVEL: expected one of/);
  });
});
