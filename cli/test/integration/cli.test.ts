// The built `roster` CLI as a real child process against a real nats-server, a real registry
// and a real agent (their bins), plus a small fake server for the answers a healthy stack
// never gives (garbage, hangs, proxies) and to see the bearer token.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { ChildProc, NatsServer, freePort, spawnNode, waitFor } from "roster-testkit";

const root = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..", "..", "..");
const CLI = join(root, "cli", "bin", "roster.js");
const AGENT = join(root, "agent", "bin", "roster-agent.js");
const REGISTRY = join(root, "registry", "bin", "roster-registry.js");
const COMMANDS = ["services", "instances", "register", "deregister", "maintenance", "catalog", "health"];

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface Inst {
  id: string;
  service: string;
  status: string;
  host: string;
  address: string;
  port: number;
  tags: string[];
  meta: Record<string, string>;
  weight: number;
  checks: Array<{ id: string; type: string; status: string }>;
}

describe("roster CLI", () => {
  let nats: NatsServer;
  let dir: string;
  let registry: ChildProc;
  let agent: ChildProc;
  let idle: ChildProc;
  let registryUrl: string;
  let agentUrl: string;
  let idleUrl: string;
  let fake: Server;
  let fakeUrl: string;
  const seen: IncomingHttpHeaders[] = [];
  let env: NodeJS.ProcessEnv;
  let startRegistry: () => ChildProc;

  function roster(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<Run> {
    return new Promise((resolvePromise) => {
      execFile(process.execPath, [CLI, ...args], { env: { ...env, ...extraEnv }, timeout: 20_000 }, (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : null) : 0;
        resolvePromise({ code, stdout, stderr });
      });
    });
  }

  async function json<T>(args: string[]): Promise<T> {
    const r = await roster([...args, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as T;
  }

  const instancesOf = (service: string) => json<Inst[]>(["instances", service]);
  /** For polling: straight HTTP (a CLI process per poll would be slow); the CLI's output is checked once settled. */
  async function current(service: string): Promise<Inst[]> {
    const res = await fetch(`${registryUrl}/v1/services/${service}/instances`).catch(() => null);
    return res?.status === 200 ? ((await res.json()) as Inst[]) : [];
  }

  before(async () => {
    nats = await NatsServer.start();
    dir = await mkdtemp(join(tmpdir(), "roster-cli-"));
    const [httpPort, agentPort, idlePort, deadNats] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    registryUrl = `http://127.0.0.1:${httpPort}`;
    agentUrl = `http://127.0.0.1:${agentPort}`;
    idleUrl = `http://127.0.0.1:${idlePort}`;
    const registryConfig = join(dir, "registry.json");
    await writeFile(registryConfig, JSON.stringify({ tickInterval: "50ms", presenceInterval: "200ms", maxBlockingWait: "5s" }));
    const agentConfig = join(dir, "agent.yaml");
    await writeFile(
      agentConfig,
      [
        "host: { id: cli-host, zone: zone-a }",
        "heartbeat: { interval: 200ms }",
        "drain: { period: 0ms }",
        "services:",
        "  - { name: web, id: web-1, port: 8081, address: 127.0.0.1, tags: [blue] }",
        "  - { name: web, id: web-2, port: 8082, address: 127.0.0.1 }",
        "",
      ].join("\n"),
    );
    startRegistry = () => (registry = spawnNode(REGISTRY, ["--nats", nats.url, "--http", `127.0.0.1:${httpPort}`, "--config", registryConfig]));
    startRegistry();
    // A registry whose NATS is not there: it serves HTTP but never becomes ready.
    idle = spawnNode(REGISTRY, ["--nats", `nats://127.0.0.1:${deadNats}`, "--http", `127.0.0.1:${idlePort}`]);
    agent = spawnNode(AGENT, ["--config", agentConfig, "--nats", nats.url, "--api", `127.0.0.1:${agentPort}`]);

    fake = createServer((req, res) => {
      seen.push(req.headers);
      const url = req.url ?? "";
      if (url.startsWith("/v1/services/slow/")) return; // never answers
      if (url === "/v1/services") return void res.writeHead(200, { "content-type": "application/json" }).end('[{"name":42,"instances":1}]');
      if (url === "/v1/catalog") return void res.writeHead(200, { "content-type": "text/html" }).end("<html>hello</html>");
      if (url === "/readyz") return void res.writeHead(502, { "content-type": "text/plain" }).end("Bad Gateway");
      res.writeHead(401, { "content-type": "application/json" }).end('{"code":"ROSTER_UNAUTHORIZED","message":"missing or wrong bearer token"}');
    });
    await new Promise<void>((r) => fake.listen(0, "127.0.0.1", r));
    fakeUrl = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;

    env = { ...process.env, ROSTER_REGISTRY_URL: registryUrl, ROSTER_AGENT_URL: agentUrl };
    delete env.ROSTER_TOKEN;
    await waitFor(
      async () => {
        const res = await fetch(`${registryUrl}/v1/services/web/instances?status=passing`).catch(() => null);
        return res?.status === 200 && ((await res.json()) as unknown[]).length === 2;
      },
      { timeoutMs: 20_000, what: `web passing twice; registry:\n${registry.output.slice(-1500)}\nagent:\n${agent.output.slice(-1500)}` },
    );
  });

  after(async () => {
    for (const p of [agent, registry, idle]) p?.kill("SIGKILL");
    await Promise.all([agent, registry, idle].map((p) => p?.exited));
    await new Promise((r) => fake?.close(r));
    await nats?.close();
    await rm(dir, { recursive: true, force: true });
  });

  // The full help and usage matrix runs in-process (test/unit/cli.test.ts); here, the real binary.
  it("cli - the binary: --help on stdout with exit 0, bad usage exit 2 with the usage on stderr", async () => {
    const [top, cmd, helpCmd, none, missing, unknown] = await Promise.all([
      roster(["--help"]),
      roster(["instances", "--help"]),
      roster(["help", "register"]),
      roster([]),
      roster(["instances"]),
      roster(["services", "--bogus"]),
    ]);
    for (const r of [top, cmd, helpCmd]) assert.deepEqual([r.code, r.stderr], [0, ""]);
    for (const c of COMMANDS) assert.match(top.stdout, new RegExp(`^  ${c} `, "m"));
    assert.match(top.stdout, /Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 registry\/agent unreachable, 5 unhealthy/);
    assert.match(cmd.stdout, /^usage: roster instances <service>/);
    assert.match(helpCmd.stdout, /^usage: roster register/);
    const cases: Array<[Run, RegExp, RegExp]> = [
      [none, /missing command/, /^usage: roster \[global options\]/m],
      [missing, /missing <service>/, /^usage: roster instances/m],
      [unknown, /Unknown option '--bogus'/, /^usage: roster services/m],
    ];
    for (const [r, message, usage] of cases) {
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stdout, "");
      assert.match(r.stderr, /^roster: ROSTER_CLI_USAGE: /);
      assert.match(r.stderr, message);
      assert.match(r.stderr, usage);
    }
  });

  it("cli - services: an aligned table, and --json for scripts", async () => {
    const r = await roster(["services"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "SERVICE  INSTANCES  PASSING\nweb      2          2\n");
    const list = await json<Array<{ name: string; instances: number; passing: number }>>(["services"]);
    assert.deepEqual(list, [{ name: "web", instances: 2, passing: 2 }]);
  });

  it("cli - instances: table, --json, filters, and an unknown service exits 3", async () => {
    const r = await roster(["instances", "web"]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split("\n");
    assert.match(lines[0]!, /^ID\s+ADDRESS\s+ZONE\s+STATUS\s+HOST\s+WEIGHT\s+TAGS\s+CHECKS$/);
    assert.match(lines[1]!, /^web-1\s+127\.0\.0\.1:8081\s+zone-a\s+passing\s+cli-host\s+100\s+blue\s+-$/);
    assert.match(lines[2]!, /^web-2\s+127\.0\.0\.1:8082\s+zone-a\s+passing\s+cli-host\s+100\s+-\s+-$/);
    // Aligned: every row's STATUS column starts where the header's does.
    const col = lines[0]!.indexOf("STATUS");
    for (const l of lines.slice(1)) assert.equal(l.slice(col, col + 7), "passing");

    const list = await instancesOf("web");
    assert.deepEqual(list.map((i) => [i.id, i.host, i.port, i.status, i.tags]), [["web-1", "cli-host", 8081, "passing", ["blue"]], ["web-2", "cli-host", 8082, "passing", []]]);
    assert.deepEqual(await json<Inst[]>(["instances", "web", "--zone", "zone-b"]), []);
    assert.deepEqual((await json<Inst[]>(["instances", "web", "--tag", "blue", "--status", "passing"])).map((i) => i.id), ["web-1"]);

    const missing = await roster(["instances", "nope"]);
    assert.equal(missing.code, 3);
    assert.equal(missing.stdout, "");
    assert.match(missing.stderr, /^roster: ROSTER_SERVICE_NOT_FOUND: service "nope" is not known to the registry \(list the known services with: roster services\)\n$/);
  });

  it("cli - register through the agent (flags, then a YAML file) shows up in instances, with its check", async () => {
    const r = await roster([
      "register", "--service", "api", "--id", "api-1", "--address", "127.0.0.1", "--port", "9001",
      "--tag", "v2", "--tag", "canary", "--meta", "version=1.4.2", "--meta", "owner=team=a", "--weight", "50",
      "--check-http", `${registryUrl}/healthz`, "--check-interval", "200ms",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `registered instance api-1 with the agent at ${agentUrl}\n`);
    await waitFor(async () => (await current("api"))[0]?.status === "passing", { timeoutMs: 10_000, what: "api-1 passing" });
    const [inst] = await instancesOf("api");
    assert.equal(inst!.host, "cli-host");
    assert.deepEqual(inst!.tags, ["v2", "canary"]);
    assert.deepEqual(inst!.meta, { version: "1.4.2", owner: "team=a" });
    assert.equal(inst!.weight, 50);
    assert.deepEqual(inst!.checks.map((c) => [c.type, c.status]), [["http", "passing"]]);

    const again = await json<{ id: string; replaced: boolean }>(["register", "--service", "api", "--id", "api-1", "--address", "127.0.0.1", "--port", "9001"]);
    assert.deepEqual(again, { id: "api-1", replaced: true });

    const file = join(dir, "api-2.yaml");
    await writeFile(file, "name: api\nid: api-2\naddress: 127.0.0.1\nport: 9002\nmeta: { from: file }\n");
    const f = await roster(["register", "--file", file]);
    assert.equal(f.code, 0, f.stderr);
    await waitFor(async () => (await current("api")).some((i) => i.id === "api-2" && i.meta.from === "file"), { timeoutMs: 10_000, what: "api-2 from the file" });

    // The agent's own validation comes back as its code and issues, exit 1.
    const bad = join(dir, "bad.json");
    await writeFile(bad, JSON.stringify({ name: "api", port: 70000 }));
    const refused = await roster(["register", "--file", bad]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^roster: ROSTER_BAD_REQUEST: invalid instance: port: .*\n {2}port: /);
    const unreadable = await roster(["register", "--file", join(dir, "missing.yaml")]);
    assert.equal(unreadable.code, 1);
    assert.match(unreadable.stderr, /^roster: ROSTER_CLI_FILE: cannot read .*missing\.yaml: ENOENT/);
  });

  it("cli - maintenance on drains the instance, off puts it back", async () => {
    const on = await roster(["maintenance", "on", "api-1", "--reason", "kernel upgrade"]);
    assert.equal(on.code, 0, on.stderr);
    assert.equal(on.stdout, "maintenance on for instance api-1\n");
    await waitFor(async () => (await current("api")).find((i) => i.id === "api-1")?.status === "draining", { timeoutMs: 10_000, what: "api-1 draining" });
    const passing = await json<Inst[]>(["instances", "api", "--status", "passing"]);
    assert.deepEqual(passing.map((i) => i.id), ["api-2"]);
    assert.deepEqual(await json(["maintenance", "off", "api-1"]), { id: "api-1", maintenance: false });
    await waitFor(async () => (await current("api")).find((i) => i.id === "api-1")?.status === "passing", { timeoutMs: 10_000, what: "api-1 passing again" });
  });

  it("cli - deregister removes the instance; an unknown id exits 3", async () => {
    const r = await roster(["deregister", "api-2"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "deregistered instance api-2\n");
    await waitFor(async () => !(await current("api")).some((i) => i.id === "api-2"), { timeoutMs: 10_000, what: "api-2 gone" });
    const again = await roster(["deregister", "api-2"]);
    assert.equal(again.code, 3);
    assert.match(again.stderr, /^roster: ROSTER_NOT_FOUND: .*api-2.* \(list this host's instances: GET http:\/\/127\.0\.0\.1:\d+\/v1\/agent\/instances\)\n$/);
    const off = await roster(["maintenance", "on", "ghost"]);
    assert.equal(off.code, 3);
  });

  it("cli - instances --watch prints each change and exits 0 on SIGINT (JSON) and SIGTERM (table)", async () => {
    const watch = spawn(process.execPath, [CLI, "instances", "web", "--watch", "--json", "--wait", "1s"], { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    watch.stdout.on("data", (d: Buffer) => (out += d.toString()));
    watch.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => watch.once("exit", (code) => r(code)));
    const lines = () => out.split("\n").filter(Boolean).map((l) => JSON.parse(l) as { index: number; instances: Inst[] });
    try {
      await waitFor(() => lines().length >= 1, { timeoutMs: 10_000, what: `first watch line; stderr: ${err}` });
      assert.deepEqual(lines()[0]!.instances.map((i) => i.status), ["passing", "passing"]);
      // Blocking queries that time out (wait 1s) with no change print nothing new.
      await new Promise((r) => setTimeout(r, 1600));
      assert.equal(lines().length, 1, out);
      assert.equal((await roster(["maintenance", "on", "web-2"])).code, 0);
      await waitFor(() => lines().some((l) => l.instances.find((i) => i.id === "web-2")?.status === "draining"), { timeoutMs: 10_000, what: `a draining line; got ${out}` });
      const all = lines();
      assert.ok(all.at(-1)!.index > all[0]!.index);
      watch.kill("SIGINT");
      assert.equal(await exited, 0, err);
      assert.equal(err, "");
    } finally {
      watch.kill("SIGKILL");
      await roster(["maintenance", "off", "web-2"]);
    }

    const table = spawnNode(CLI, ["instances", "web", "--watch"], { env });
    try {
      await table.waitForOutput(/^# \d{4}-\d\d-\d\dT[\d:.]+Z index \d+\nID\s+ADDRESS/m);
      const exit = await table.stop(5000);
      assert.deepEqual(exit, { code: 0, signal: null }, table.output);
    } finally {
      table.kill("SIGKILL");
    }
  });

  it("cli - instances --watch rides out a registry restart: retries on stderr, then prints the next change", async () => {
    const watch = spawnNode(CLI, ["instances", "web", "--watch", "--json", "--wait", "1s"], { env });
    try {
      await watch.waitForOutput('{"index":');
      registry.kill("SIGKILL");
      await registry.exited;
      await watch.waitForOutput(/roster: ROSTER_CLI_UNREACHABLE: cannot reach the registry at .*; retrying in \d+ ms/);
      startRegistry();
      await waitFor(async () => (await fetch(`${registryUrl}/readyz`).catch(() => null))?.status === 200, { timeoutMs: 15_000, what: "registry ready again" });
      assert.equal((await roster(["maintenance", "on", "web-1"])).code, 0);
      const drained = () =>
        watch.output
          .split("\n")
          .filter((l) => l.startsWith("{"))
          .some((l) => (JSON.parse(l) as { instances: Inst[] }).instances.find((i) => i.id === "web-1")?.status === "draining");
      await waitFor(drained, { timeoutMs: 15_000, what: "a draining line" }).catch((err: Error) => {
        throw new Error(`${err.message}; watch printed:\n${watch.output.slice(-3000)}`);
      });
      assert.equal(watch.alive, true);
      const exit = await watch.stop(5000);
      assert.deepEqual(exit, { code: 0, signal: null }, watch.output);
    } finally {
      watch.kill("SIGKILL");
      await roster(["maintenance", "off", "web-1"]);
    }
  });

  it("cli - catalog dump is one JSON document with every service", async () => {
    const r = await roster(["catalog", "dump"]);
    assert.equal(r.code, 0, r.stderr);
    const dump = JSON.parse(r.stdout) as { revision: number; services: Record<string, Inst[]> };
    assert.ok(dump.revision > 0);
    assert.deepEqual(Object.keys(dump.services), ["api", "web"]);
    assert.deepEqual(dump.services.web!.map((i) => i.id), ["web-1", "web-2"]);
    assert.deepEqual(dump.services.api!.map((i) => i.id), ["api-1"]);
  });

  it("cli - health: exit 0 when ready, 5 with the reasons when not", async () => {
    const ok = await roster(["health"]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^ready\s+yes$/m);
    assert.match(ok.stdout, /^self-preservation\s+no$/m);
    assert.match(ok.stdout, /^hosts\s+1 \(0 lost\)$/m);
    const j = await json<{ healthy: boolean; problems: string[]; status: { hosts: number } }>(["health"]);
    assert.equal(j.healthy, true);
    assert.equal(j.status.hosts, 1);

    await waitFor(async () => (await fetch(`${idleUrl}/healthz`).catch(() => null))?.status === 200, { timeoutMs: 15_000, what: "idle registry listening" });
    const sick = await roster(["health", "--registry", idleUrl]);
    assert.equal(sick.code, 5, sick.stderr);
    assert.match(sick.stdout, /^ready\s+no$/m);
    assert.match(sick.stderr, /^roster: ROSTER_CLI_UNHEALTHY: the registry at http:\/\/127\.0\.0\.1:\d+ is not healthy: not ready; not connected to NATS/);
    const sickJson = await roster(["health", "--json"], { ROSTER_REGISTRY_URL: idleUrl });
    assert.equal(sickJson.code, 5);
    assert.equal((JSON.parse(sickJson.stdout) as { healthy: boolean }).healthy, false);
  });

  it("cli - an unreachable registry or agent: ROSTER_CLI_UNREACHABLE, exit 4, a hint", async () => {
    const port = await freePort();
    const [reg, ag, health] = await Promise.all([
      roster(["services", "--json"], { ROSTER_REGISTRY_URL: `http://127.0.0.1:${port}` }),
      roster(["deregister", "web-1", "--agent", `http://127.0.0.1:${port}`]),
      roster(["health", "--registry", `http://127.0.0.1:${port}/`]),
    ]);
    assert.equal(reg.code, 4);
    assert.equal(reg.stdout, "");
    assert.equal(reg.stderr, `roster: ROSTER_CLI_UNREACHABLE: cannot reach the registry at http://127.0.0.1:${port}: connection refused (set --registry or ROSTER_REGISTRY_URL)\n`);
    assert.equal(ag.code, 4);
    assert.equal(ag.stderr, `roster: ROSTER_CLI_UNREACHABLE: cannot reach the agent at http://127.0.0.1:${port}: connection refused (set --agent or ROSTER_AGENT_URL)\n`);
    assert.equal(health.code, 4);
  });

  it("cli - garbled, non-JSON, proxy and hanging answers are clear errors; the bearer token is sent", async () => {
    const [garbled, html, proxy, hang, auth] = await Promise.all([
      roster(["services", "--registry", fakeUrl, "--token", "s3cret"]),
      roster(["catalog", "dump", "--registry", fakeUrl]),
      roster(["health", "--registry", fakeUrl]),
      roster(["instances", "slow", "--registry", fakeUrl, "--timeout", "300ms"]),
      roster(["maintenance", "on", "x", "--agent", fakeUrl], { ROSTER_TOKEN: "from-env" }),
    ]);
    assert.equal(garbled.code, 1);
    assert.match(garbled.stderr, /^roster: ROSTER_CLI_BAD_RESPONSE: GET \/v1\/services on the registry at .* answered something unexpected \(is it a Roster registry .*\)\n {2}\[0\]\.name: /);
    assert.equal(html.code, 1);
    assert.match(html.stderr, /^roster: ROSTER_CLI_BAD_RESPONSE: .* not JSON/);
    assert.equal(proxy.code, 1);
    assert.match(proxy.stderr, /^roster: ROSTER_CLI_HTTP: GET \/readyz on the registry at .* answered HTTP 502: Bad Gateway/);
    assert.equal(hang.code, 4);
    assert.match(hang.stderr, /^roster: ROSTER_CLI_TIMEOUT: no answer from the registry at .* within 300 ms/);
    assert.equal(auth.code, 1);
    assert.equal(auth.stderr, "roster: ROSTER_UNAUTHORIZED: missing or wrong bearer token (set --token or ROSTER_TOKEN)\n");
    const tokens = seen.map((h) => h.authorization).filter(Boolean).sort();
    assert.deepEqual(tokens, ["Bearer from-env", "Bearer s3cret"]);
    for (const r of [garbled, html, proxy, hang, auth]) assert.equal(r.stdout, "");
  });
});
