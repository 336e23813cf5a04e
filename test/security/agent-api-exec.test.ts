// Attack 1 of the "secure by default" issue, replayed against real processes (nats-server from the
// test kit, the registry and agent bins, the roster CLI bin): remote command execution through the
// agent's local API, and the same API reached with a forged Host header (DNS rebinding). Next to
// each, the legitimate path: config-file exec checks, the API called as localhost, and the CLI
// with the token the agent generated.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { NatsServer, waitFor, type ChildProc } from "roster-testkit";
import { CLI, catalogInstances, cleanEnv, killAll, raw, startAgent, startRegistry, tempDir, waitForInstance } from "./agent-support.js";

describe("security - agent API: exec checks and Host", () => {
  let nats: NatsServer;
  let dir: string;
  let cleanup: () => Promise<void>;
  let registry: { proc: ChildProc; url: string };
  let plain: { proc: ChildProc; api: string };
  let execOn: { proc: ChildProc; api: string };
  let home: string;

  before(async () => {
    ({ dir, cleanup } = await tempDir());
    home = join(dir, "home");
    await mkdir(home);
    nats = await NatsServer.start();
    registry = await startRegistry(["--nats", nats.url, "--http", "127.0.0.1:0"]);
    // The default agent, with one exec check in its config file (the operator's: it must run).
    plain = await startAgent(
      dir,
      [
        "host: { id: sec-plain }",
        "heartbeat: { interval: 200ms }",
        "drain: { period: 0 }",
        "services:",
        '  - { name: cfgsvc, port: 9, address: 127.0.0.1, checks: [{ type: exec, command: ["/bin/sh", "-c", "echo config-check-ok"], interval: 200ms }] }',
        "",
      ].join("\n"),
      ["--nats", nats.url, "--api", "127.0.0.1:0"],
      cleanEnv({ HOME: home }),
    );
  });

  after(async () => {
    await killAll(plain?.proc, execOn?.proc, registry?.proc);
    await nats?.close();
    await cleanup?.();
  });

  it("security - attack 1: an exec check PUT through the agent API is refused with ROSTER_EXEC_CHECKS_DISABLED and runs nothing", async () => {
    const pwned = join(dir, "pwned");
    const r = await raw("PUT", `${plain.api}/v1/agent/instances`, {
      body: { name: "pwn", port: 1, checks: [{ type: "exec", command: ["/bin/sh", "-c", `id > ${pwned}`], interval: "100ms" }] },
    });
    assert.equal(r.status, 403, r.text);
    assert.equal(r.json.code, "ROSTER_EXEC_CHECKS_DISABLED");
    assert.match(String(r.json.message), /api\.allowExecChecks/, "the message names the setting that allows it");
    await sleep(600);
    assert.equal(existsSync(pwned), false, "the command ran");
    assert.deepEqual(await catalogInstances(registry.url, "pwn"), []);
    const list = await raw("GET", `${plain.api}/v1/agent/instances`);
    assert.deepEqual((list.json.instances as Array<{ service: string }>).map((i) => i.service), ["cfgsvc"]);
  });

  it("security - attack 1: a forged Host header (DNS rebinding) is refused with ROSTER_HOST_NOT_ALLOWED on reads and writes", async () => {
    const port = new URL(plain.api).port;
    for (const host of [`attacker.example:${port}`, "attacker.example", `127.0.0.1.nip.io:${port}`]) {
      const get = await raw("GET", `${plain.api}/v1/agent/instances`, { headers: { host } });
      assert.equal(get.status, 403, `${host}: ${get.text}`);
      assert.equal(get.json.code, "ROSTER_HOST_NOT_ALLOWED");
      assert.match(String(get.json.message), /api\.allowedHosts/);
      const put = await raw("PUT", `${plain.api}/v1/agent/instances`, { headers: { host }, body: { name: "rebound", port: 2, checks: [{ type: "ttl", ttl: "1m" }] } });
      assert.equal(put.status, 403, `${host}: ${put.text}`);
    }
    const list = await raw("GET", `${plain.api}/v1/agent/instances`);
    assert.ok(!(list.json.instances as Array<{ service: string }>).some((i) => i.service === "rebound"), "the forged-Host PUT registered an instance");
  });

  it("security - legit: the API answers localhost, 127.0.0.1 and [::1] as Host, and config-file exec checks run and reach the catalog", async () => {
    const port = new URL(plain.api).port;
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, "localhost"]) {
      const r = await raw("GET", `${plain.api}/healthz`, { headers: { host } });
      assert.equal(r.status, 200, `${host}: ${r.text}`);
    }
    const ttl = await raw("PUT", `${plain.api}/v1/agent/instances`, { headers: { host: `localhost:${port}` }, body: { name: "jobs", port: 3, address: "127.0.0.1", checks: [{ type: "ttl", ttl: "1m" }] } });
    assert.equal(ttl.status, 200, ttl.text);
    const inst = await waitForInstance(registry.url, "cfgsvc", (i) => i.status === "passing", "the config-file exec check passing in the catalog");
    assert.match(inst.checks?.[0]?.output ?? "", /config-check-ok/);
  });

  it("security - legit: with api.allowExecChecks the API needs the generated 0600 token, and the roster CLI finds it by itself", async () => {
    // An agent whose operator turned API exec checks on: a token is generated (none configured).
    execOn = await startAgent(dir, "host: { id: sec-exec }\nheartbeat: { interval: 200ms }\ndrain: { period: 0 }\napi: { allowExecChecks: true }\n", ["--nats", nats.url, "--api", "127.0.0.1:0"], cleanEnv({ HOME: home }), "exec-on.yaml");
    const m = /"tokenFile":"([^"]+)"/.exec(execOn.proc.output);
    assert.ok(m, `no tokenFile in the agent's log:\n${execOn.proc.output.slice(-1500)}`);
    const tokenFile = m[1]!;
    assert.equal(statSync(tokenFile).mode & 0o777, 0o600);
    const marker = join(dir, "exec-ran");
    const body = { name: "allowed", port: 4, address: "127.0.0.1", checks: [{ type: "exec", command: ["/bin/sh", "-c", `touch ${marker}; echo allowed-ok`], interval: "200ms" }] };
    const anon = await raw("PUT", `${execOn.api}/v1/agent/instances`, { body });
    assert.equal(anon.status, 401, "exec checks on: writes need the token");
    assert.equal(anon.json.code, "ROSTER_UNAUTHORIZED");

    const def = join(dir, "allowed.json");
    await writeFile(def, JSON.stringify(body));
    // Same user (HOME), no token on the command line or in the env: the CLI reads the agent's file.
    const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>((done) =>
      execFile(process.execPath, [CLI, "register", "--file", def, "--agent", execOn.api], { env: cleanEnv({ HOME: home }), timeout: 30_000 }, (err, stdout, stderr) =>
        done({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr }),
      ),
    );
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /registered instance/);
    await waitFor(() => existsSync(marker), { timeoutMs: 10_000, what: "the allowed exec check ran" });
    const inst = await waitForInstance(registry.url, "allowed", (i) => i.status === "passing", "the API exec check passing in the catalog");
    assert.match(inst.checks?.[0]?.output ?? "", /allowed-ok/);
    assert.doesNotMatch(execOn.proc.output, new RegExp(readFileSync(tokenFile, "utf8").trim()), "the token is in the agent's log");
  });
});
