// The command line itself, in-process through run(): every command's help and the usage errors.
// No server is involved (a usage error never reaches the network); the integration test runs the
// real binary against a real stack.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { COMMANDS, DEFAULT_AGENT, DEFAULT_REGISTRY, USAGE, run } from "../../src/cli.js";

async function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  let stdout = "";
  let stderr = "";
  // A closed port: anything that did reach the network would fail with exit 4, not 0 or 2.
  const code = await run(args, { out: (t) => (stdout += t), err: (t) => (stderr += t), env: { ROSTER_REGISTRY_URL: "http://127.0.0.1:9", ROSTER_AGENT_URL: "http://127.0.0.1:9", ...env } });
  return { code, stdout, stderr };
}

describe("cli (in-process)", () => {
  it("cli - top-level help lists every command and the exit codes", async () => {
    for (const args of [["--help"], ["-h"], ["help"]]) {
      const r = await cli(args);
      assert.deepEqual([r.code, r.stderr], [0, ""]);
      assert.equal(r.stdout, USAGE);
    }
    for (const c of COMMANDS) assert.match(USAGE, new RegExp(`^  ${c.name} +\\S`, "m"));
  });

  it("cli - --version and -v print the package's version, with or without a command", async () => {
    const { version } = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string };
    for (const args of [["--version"], ["-v"], ["services", "--version"]]) {
      const r = await cli(args);
      assert.deepEqual([r.code, r.stderr], [0, ""]);
      assert.equal(r.stdout, `roster ${version} (node ${process.version})\n`);
    }
  });

  it("cli - every command has --help, -h and `help <command>`, each on stdout with exit 0", async () => {
    assert.equal(COMMANDS.length, 9); // services, instances, register, deregister, maintenance, catalog, health, host, policy
    for (const c of COMMANDS) {
      for (const args of [[c.name, "--help"], [c.name, "-h"], ["help", c.name], ["--json", c.name, "--help"]]) {
        const r = await cli(args);
        assert.deepEqual([r.code, r.stderr], [0, ""], args.join(" "));
        assert.equal(r.stdout, c.usage, args.join(" "));
        assert.match(r.stdout, new RegExp(`^usage: roster ${c.name}`));
      }
    }
  });

  it("cli - bad usage: exit 2, ROSTER_CLI_USAGE with what is wrong, then the usage, nothing on stdout", async () => {
    const cases: Array<[string[], RegExp, string]> = [
      [[], /missing command/, "top"],
      [["frobnicate"], /unknown command "frobnicate"/, "top"],
      [["help", "frobnicate"], /unknown command "frobnicate"/, "top"],
      [["services", "extra"], /unexpected argument "extra"/, "services"],
      [["services", "--bogus"], /Unknown option '--bogus'/, "services"],
      [["instances"], /missing <service>/, "instances"],
      [["instances", "a", "b"], /unexpected argument "b"/, "instances"],
      [["instances", "no.dots"], /<service>: expected 1-63 letters/, "instances"],
      [["instances", "web", "--status", "bogus"], /--status: expected "passing" or "any"/, "instances"],
      [["instances", "web", "--status"], /--status <value>' argument missing/, "instances"],
      [["instances", "web", "--wait", "5s"], /--wait only goes with --watch/, "instances"],
      [["instances", "web", "--watch", "--wait", "10ms"], /--wait: expected a duration of at least 1s/, "instances"],
      [["register"], /missing --service \(or --file\)/, "register"],
      [["register", "--service", "api"], /missing --port/, "register"],
      [["register", "--service", "api", "--port", "abc"], /--port: expected a whole number/, "register"],
      [["register", "--service", "api", "--port", "70000"], /--port: Too big/i, "register"],
      [["register", "--service", "api", "--port", "80", "--meta", "novalue"], /--meta\[0\]: expected key=value/, "register"],
      [["register", "--service", "api", "--port", "80", "--check-http", "ftp://x"], /--check-http: expected an http/, "register"],
      [["register", "--service", "api", "--port", "80", "--check-interval", "1s"], /only with --check-http or --check-tcp/, "register"],
      [["register", "--file", "x.yaml", "--port", "80"], /--file does not mix with --port/, "register"],
      [["host"], /missing subcommand "reset"/, "host"],
      [["host", "reset"], /missing <host>/, "host"],
      [["host", "reset", "bad id!"], /"bad id!" is not a host id/, "host"],
      [["host", "reset", "h1", "extra"], /unexpected argument "extra"/, "host"],
      [["deregister"], /missing <instance-id>/, "deregister"],
      [["deregister", "bad id!"], /<instance-id>: expected 1-63 letters/, "deregister"],
      [["maintenance", "web-1"], /expected "on" or "off", got "web-1"/, "maintenance"],
      [["maintenance", "on"], /missing <instance-id>/, "maintenance"],
      [["maintenance", "on", "web-1", "--reason", "x".repeat(257)], /--reason: at most 256/, "maintenance"],
      [["catalog"], /missing subcommand "dump"/, "catalog"],
      [["catalog", "load"], /unknown subcommand "load"/, "catalog"],
      [["health", "now"], /unexpected argument "now"/, "health"],
      [["--registry", "ftp://example", "services"], /--registry \/ ROSTER_REGISTRY_URL: expected an http/, "services"],
      [["deregister", "web-1"], /--agent \/ ROSTER_AGENT_URL: expected an http/, "deregister"],
      [["services", "--token", "two words"], /--token \/ ROSTER_TOKEN: expected printable/, "services"],
      [["services", "--timeout", "soon"], /--timeout: expected a duration/, "services"],
    ];
    for (const [args, message, usage] of cases) {
      const env = args[0] === "deregister" && args[1] === "web-1" ? { ROSTER_AGENT_URL: "not a url" } : {};
      const r = await cli(args, env);
      const what = `roster ${args.join(" ")}: ${r.stderr}`;
      assert.equal(r.code, 2, what);
      assert.equal(r.stdout, "", what);
      assert.match(r.stderr, /^roster: ROSTER_CLI_USAGE: /, what);
      assert.match(r.stderr.split("\n")[0]!, message, what);
      const expected = usage === "top" ? USAGE : COMMANDS.find((c) => c.name === usage)!.usage;
      assert.ok(r.stderr.endsWith(`\n\n${expected}`), what);
    }
  });

  it("cli - defaults: 127.0.0.1:7700 for the registry; flags win over the environment", async () => {
    const viaEnv = await cli(["services"]);
    assert.match(viaEnv.stderr, /cannot reach the registry at http:\/\/127\.0\.0\.1:9:/);
    // Not called: something may listen on 7700 on this machine.
    assert.deepEqual([DEFAULT_REGISTRY, DEFAULT_AGENT], ["http://127.0.0.1:7700", "http://127.0.0.1:7701"]);
    assert.match(USAGE, /default http:\/\/127\.0\.0\.1:7700/);
    // A bad URL for the server a command does not call is not read.
    const other = await cli(["services"], { ROSTER_AGENT_URL: "not a url" });
    assert.equal(other.code, 4, other.stderr);
    const flag = await cli(["services", "--registry", "http://127.0.0.1:10/"]);
    assert.match(flag.stderr, /registry at http:\/\/127\.0\.0\.1:10: /);
    assert.equal(flag.code, 4);
  });
});
