// `roster policy get|set|delete` as a real child process against a real registry process and a
// real nats-server, with the registry's read and write tokens.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { ChildProc, NatsServer, freePort, spawnNode } from "roster-testkit";

const root = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..", "..", "..");
const CLI = join(root, "cli", "bin", "roster.js");
const REGISTRY = join(root, "registry", "bin", "roster-registry.js");
const READ = "policy-read-token-0123456789";
const WRITE = "policy-write-token-0123456789";

const YAML_POLICY = `# a canary at 5 %
subsets:
  stable: { tags: [v1] }
  canary: { meta: { version: "2.0.0" } }
split:
  - { subset: stable, weight: 95 }
  - { subset: canary, weight: 5 }
routes:
  - { match: { headers: { x-canary: "always" } }, subset: canary }
timeouts: { try: 500ms, deadline: 2s }
fallback: { status: 503, body: '{"error":"try later"}', headers: { retry-after: "2" } }
`;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe("roster policy", () => {
  let nats: NatsServer;
  let registry: ChildProc;
  let dir: string;
  let url: string;

  const roster = (args: string[], token = WRITE): Promise<Run> =>
    new Promise((done) => {
      execFile(process.execPath, [CLI, "--registry", url, "--token", token, ...args], { timeout: 20_000 }, (err, stdout, stderr) => {
        done({ code: err ? (typeof err.code === "number" ? err.code : null) : 0, stdout, stderr });
      });
    });

  before(async () => {
    nats = await NatsServer.start();
    dir = await mkdtemp(join(tmpdir(), "roster-cli-policy-"));
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    registry = spawnNode(REGISTRY, ["--nats", nats.url, "--http", `127.0.0.1:${port}`], { env: { ...process.env, ROSTER_HTTP_READ_TOKEN: READ, ROSTER_HTTP_WRITE_TOKEN: WRITE } });
    await registry.waitForOutput("registry ready", 15_000);
    await writeFile(join(dir, "policy.yaml"), YAML_POLICY);
    await writeFile(join(dir, "bad.json"), JSON.stringify({ subsets: { a: {} }, split: [{ subset: "b", weight: 1 }] }));
  });

  after(async () => {
    await registry?.stop();
    await nats?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("policy - set from YAML, get prints YAML that set takes back, delete, then not found (exit 3)", async () => {
    assert.equal((await roster(["policy", "get", "orders"], READ)).code, 3);
    const set = await roster(["policy", "set", "orders", "--file", join(dir, "policy.yaml")]);
    assert.equal(set.code, 0, set.stderr);
    const rev = Number(/revision (\d+)/.exec(set.stdout)?.[1]);
    assert.ok(rev > 0, set.stdout);

    const get = await roster(["policy", "get", "orders"], READ);
    assert.equal(get.code, 0, get.stderr);
    assert.match(get.stdout, new RegExp(`^# policy of orders, revision ${rev}$`, "m"));
    assert.match(get.stdout, /^# SUBSET +WEIGHT +CONFIGURED +IN FORCE +USABLE$/m);
    assert.match(get.stdout, /try: 500ms/);
    // What get prints is a policy file again.
    await writeFile(join(dir, "roundtrip.yaml"), get.stdout);
    const again = await roster(["policy", "set", "orders", "--file", join(dir, "roundtrip.yaml"), "--if-match", String(rev), "--json"]);
    assert.equal(again.code, 0, again.stderr);
    const answer = JSON.parse(again.stdout) as { revision: number; policy: Record<string, unknown> };
    assert.ok(answer.revision > rev);
    assert.deepEqual((answer.policy.timeouts as Record<string, unknown>), { try: "500ms", deadline: "2s" });

    const stale = await roster(["policy", "delete", "orders", "--if-match", String(rev)]);
    assert.equal(stale.code, 1);
    assert.match(stale.stderr, /ROSTER_PRECONDITION_FAILED/);
    const del = await roster(["policy", "delete", "orders"]);
    assert.equal(del.code, 0, del.stderr);
    assert.equal((await roster(["policy", "get", "orders"], READ)).code, 3);
    assert.equal((await roster(["policy", "delete", "orders"])).code, 3);
  });

  it("policy - a read-only token cannot set or delete; a bad field is named; usage errors exit 2", async () => {
    const ro = await roster(["policy", "set", "orders", "--file", join(dir, "policy.yaml")], READ);
    assert.equal(ro.code, 1);
    assert.match(ro.stderr, /ROSTER_FORBIDDEN/);
    assert.match((await roster(["policy", "delete", "orders"], READ)).stderr, /ROSTER_FORBIDDEN/);
    const bad = await roster(["policy", "set", "orders", "--file", join(dir, "bad.json")]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /ROSTER_POLICY_INVALID: invalid policy: split\[0\]\.subset: unknown subset "b"/);
    assert.equal((await roster(["policy", "set", "orders"])).code, 2);
    assert.equal((await roster(["policy", "frob", "orders"])).code, 2);
    assert.equal((await roster(["policy", "set", "orders", "--file", join(dir, "missing.yaml")])).code, 1);
  });
});
