// End to end, with clients no one here wrote, against real processes: a roster-agent registers
// real demo services, a roster-registry (its bin, configured by env) serves DNS and the
// Consul-compatible API; python-consul (Debian's python3-consul) reads the catalog and blocks on
// a change, dnsmasq forwards `.roster` to the registry as docs/dns-and-consul.md says, and dig asks.
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { ChildProc, NatsServer, freePort, spawnNode, waitFor } from "roster-testkit";

const root = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..");
const AGENT = join(root, "agent", "bin", "roster-agent.js");
const REGISTRY = join(root, "registry", "bin", "roster-registry.js");
const DEMO = join(root, "examples", "demo-service.mjs");
// Debian's python with Debian's python3-consul (not a pyenv/venv python that lacks it).
const PYTHON = "/usr/bin/python3";
const run = promisify(execFile);

function assertInstalled(): void {
  const py = spawnSync(PYTHON, ["-c", "import consul"], { encoding: "utf8" });
  if (py.status !== 0) throw new Error(`python-consul missing: apt-get install -y python3-consul (.ci/run does it)\n${py.stderr}`);
  for (const [bin, pkg] of [["dig", "bind9-dnsutils"], ["/usr/sbin/dnsmasq", "dnsmasq-base"]] as const) {
    const r = spawnSync(bin, ["-v"], { encoding: "utf8" });
    if (r.error) throw new Error(`${bin} missing: apt-get install -y ${pkg} (.ci/run does it)`);
  }
}

/** Runs a python-consul snippet; `c` is a Consul client on the registry's Consul API. Prints JSON. */
async function py(consulAt: string, code: string): Promise<unknown> {
  const [host, port] = consulAt.split(":");
  const script = `import consul, json, sys\nc = consul.Consul(host=${JSON.stringify(host)}, port=${port})\n${code}\n`;
  const { stdout } = await run(PYTHON, ["-c", script], { timeout: 60_000 });
  return JSON.parse(stdout);
}

async function dig(at: string, ...args: string[]): Promise<string[]> {
  const [host, port] = at.split(":");
  const { stdout } = await run("dig", [`@${host}`, "-p", port!, "+short", "+time=2", "+tries=2", ...args]);
  return stdout.split("\n").filter(Boolean).sort();
}

describe("consul-dns-stack", () => {
  let nats: NatsServer;
  let dir: string;
  let registry: ChildProc;
  let agent: ChildProc;
  let dnsmasq: ChildProc;
  const demos: ChildProc[] = [];
  const ports: number[] = [];
  let consulAt = "";
  let dnsAt = "";
  let forwarderAt = "";

  before(async () => {
    assertInstalled();
    nats = await NatsServer.start();
    dir = await mkdtemp(join(tmpdir(), "roster-consul-e2e-"));
    ports.push(await freePort(), await freePort());
    for (const [n, port] of ports.entries()) {
      const d = spawnNode(DEMO, [String(port), `orders-${n + 1}`]);
      demos.push(d);
      await d.waitForOutput("listening");
    }
    registry = spawnNode(REGISTRY, ["--nats", nats.url, "--http", "127.0.0.1:0"], {
      env: { ...process.env, ROSTER_CONSUL_API: "127.0.0.1:0", ROSTER_DNS: "127.0.0.1:0", ROSTER_LOG_PRETTY: "0" },
    });
    await registry.waitForOutput(/Consul-compatible API listening/, 15_000);
    consulAt = /"url":"http:\/\/(127\.0\.0\.1:\d+)"[^\n]*Consul-compatible API listening/.exec(registry.output)![1]!;
    dnsAt = /"dns":"(127\.0\.0\.1:\d+)"/.exec(registry.output)![1]!;
    const check = "{ type: http, path: /health, interval: 200ms, timeout: 150ms, failuresBeforeCritical: 2 }";
    const agentConfig = join(dir, "agent.yaml");
    await writeFile(
      agentConfig,
      [
        "host: { id: stack-host, zone: zone-a }",
        "heartbeat: { interval: 200ms }",
        "services:",
        ...ports.map((p, n) => `  - { name: orders, id: orders-${n + 1}, port: ${p}, address: 127.0.0.1, tags: [v1, web], checks: [${check}] }`),
        "",
      ].join("\n"),
    );
    agent = spawnNode(AGENT, ["--config", agentConfig, "--nats", nats.url, "--api", "127.0.0.1:0"]);
    // dnsmasq as a local forwarder: only `.roster` goes to the registry (the documented line).
    const fwdPort = await freePort();
    forwarderAt = `127.0.0.1:${fwdPort}`;
    dnsmasq = new ChildProc("/usr/sbin/dnsmasq", [
      "--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces", "--listen-address=127.0.0.1", "--interface=lo",
      `--port=${fwdPort}`, `--pid-file=${join(dir, "dnsmasq.pid")}`, "--user=root", "--log-facility=-",
      `--server=/roster/127.0.0.1#${dnsAt.split(":")[1]}`,
    ]);
    await waitFor(async () => (await dig(forwarderAt, "roster", "SOA").catch(() => [])).length > 0, { timeoutMs: 10_000, what: "dnsmasq forwarding" });
    await waitFor(
      async () => ((await py(consulAt, "print(json.dumps(c.health.service('orders', passing=True)[1]))").catch(() => [])) as unknown[]).length === 2,
      { timeoutMs: 20_000, what: "both orders instances passing" },
    );
  });

  after(async () => {
    for (const p of [dnsmasq, agent, registry, ...demos]) p?.kill("SIGKILL");
    await Promise.all([dnsmasq, agent, registry, ...demos].map((p) => p?.exited));
    await nats?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("consul-dns-stack - python-consul reads services and health in Consul's shapes", async () => {
    const services = (await py(consulAt, "print(json.dumps(c.catalog.services()[1]))")) as Record<string, string[]>;
    assert.deepEqual(services, { orders: ["v1", "web"] });
    const entries = (await py(consulAt, "print(json.dumps(c.health.service('orders', passing=True, tag='web')[1]))")) as Array<{
      Node: { Node: string };
      Service: { ID: string; Port: number; Address: string; Tags: string[] };
      Checks: Array<{ Status: string }>;
    }>;
    assert.deepEqual(entries.map((e) => e.Service.Port).sort(), [...ports].sort());
    for (const e of entries) {
      assert.equal(e.Node.Node, "stack-host");
      assert.equal(e.Service.Address, "127.0.0.1");
      assert.ok(e.Checks.every((c) => c.Status === "passing"));
    }
    const leader = await py(consulAt, "print(json.dumps(c.status.leader()))");
    assert.equal(leader, consulAt);
  });

  it("consul-dns-stack - dnsmasq forwards .roster: A and SRV resolve through it", async () => {
    assert.deepEqual(await dig(forwarderAt, "orders.service.roster", "A"), ["127.0.0.1"]);
    const srv = await dig(forwarderAt, "orders.service.roster", "SRV");
    assert.deepEqual(srv.map((l) => l.split(" ")[2]).sort(), ports.map(String).sort());
  });

  it("consul-dns-stack - kill -9 of an instance: python-consul's blocking query wakes, DNS and passing health drop it", async () => {
    const index = (await py(consulAt, "print(json.dumps(c.health.service('orders')[0]))")) as string;
    const blocked = py(consulAt, `i, nodes = c.health.service('orders', index=${JSON.stringify(index)}, wait='30s', passing=True)\nprint(json.dumps({'index': i, 'ports': [n['Service']['Port'] for n in nodes]}))`);
    const killed = Date.now();
    demos[1]!.kill("SIGKILL");
    const woke = (await blocked) as { index: string; ports: number[] };
    const tookMs = Date.now() - killed;
    assert.ok(Number(woke.index) > Number(index), `index moved: ${index} → ${woke.index}`);
    assert.ok(tookMs < 10_000, `the blocking query returned ${tookMs} ms after the kill (check interval 200 ms × 2 failures)`);
    // The first change may be the check's first failure; the instance is gone once critical.
    await waitFor(async () => ((await py(consulAt, "print(json.dumps([n['Service']['Port'] for n in c.health.service('orders', passing=True)[1]]))")) as number[]).length === 1, {
      timeoutMs: 10_000,
      what: "one passing instance",
    });
    await waitFor(async () => (await dig(forwarderAt, "orders.service.roster", "SRV")).length === 1, { timeoutMs: 5000, what: "one SRV through dnsmasq" });
    assert.deepEqual((await dig(dnsAt, "orders.service.roster", "SRV")).map((l) => l.split(" ")[2]), [String(ports[0])]);
  });
});
