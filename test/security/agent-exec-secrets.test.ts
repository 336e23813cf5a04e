// Attack 7 of the "secure by default" issue, replayed against real processes: an exec check that
// tries to print the agent's secrets (its NATS password, its API token, a secret of its
// environment), from its own environment and from the agent's (/proc/$PPID/environ, readable by
// the same user). Read back from the registry's catalog over HTTP and from both processes' logs:
// no secret value may appear anywhere. Beside it, the legitimate path: the check runs, passes, and
// gets PATH, LANG and what the config passes through (exec.passEnv); a chatty check's output is
// capped (exec.maxOutputBytes).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { startSecuredNats, type ChildProc, type SecuredNats } from "roster-testkit";
import { cleanEnv, killAll, startAgent, startRegistry, tempDir, waitForInstance } from "./agent-support.js";

const HOST = "sec-secrets";
const API_TOKEN = "agent-api-token-0123456789abcdef";
const ENV_SECRET = "s3cr3t-value-from-env-xyz";
// Prints everything it can find, then passes (a flip to passing is published and logged with its output).
const LEAK = [
  'echo "mode=$CHECK_MODE lang=$LANG"',
  'echo "own-env-pw=$ROSTER_NATS_PASSWORD own-env-token=$ROSTER_AGENT_TOKEN own-env-secret=$MY_SERVICE_SECRET"',
  "tr '\\0' '\\n' < /proc/$PPID/environ | grep -E 'ROSTER_NATS_PASSWORD|ROSTER_AGENT_TOKEN|MY_SERVICE_SECRET'",
  "exit 0",
].join("; ");

describe("security - exec checks and the agent's secrets", () => {
  let nats: SecuredNats;
  let cleanup: () => Promise<void>;
  let registry: { proc: ChildProc; url: string };
  let agent: { proc: ChildProc; api: string };
  let tuned: { proc: ChildProc; api: string } | undefined;
  let secrets: string[];
  let dir: string;
  let agentEnv: NodeJS.ProcessEnv;
  const leaky = (name: string) => `  - { name: ${name}, port: 9, address: 127.0.0.1, checks: [{ type: exec, command: ["/bin/sh", "-c", ${JSON.stringify(LEAK)}], interval: 300ms }] }`;

  before(async () => {
    const t = await tempDir();
    cleanup = t.cleanup;
    nats = await startSecuredNats({ hosts: [HOST], gateways: 0, auth: "password" });
    const agentNats = await nats.env(`agent-${HOST}`);
    const registryNats = await nats.env("registry");
    assert.ok(agentNats.ROSTER_NATS_PASSWORD && agentNats.ROSTER_NATS_PASSWORD.length >= 16, JSON.stringify(Object.keys(agentNats)));
    secrets = [agentNats.ROSTER_NATS_PASSWORD, registryNats.ROSTER_NATS_PASSWORD!, API_TOKEN, ENV_SECRET];
    registry = await startRegistry(["--nats", nats.url, "--http", "127.0.0.1:0"], cleanEnv(registryNats));
    dir = t.dir;
    agentEnv = cleanEnv({ ...agentNats, ROSTER_AGENT_TOKEN: API_TOKEN, MY_SERVICE_SECRET: ENV_SECRET, CHECK_MODE: "fast-mode", HOME: t.dir });
    // No exec settings: what every agent does by default.
    const yaml = [`host: { id: ${HOST} }`, "heartbeat: { interval: 200ms }", "drain: { period: 0 }", "services:", leaky("leaky"), ""].join("\n");
    agent = await startAgent(t.dir, yaml, ["--nats", nats.url, "--api", "127.0.0.1:0"], agentEnv);
  });

  after(async () => {
    await killAll(agent?.proc, tuned?.proc, registry?.proc);
    await nats?.close();
    await cleanup?.();
  });

  it("security - attack 7: an exec check that prints the agent's secrets leaks none of them into the catalog or any log", async () => {
    const inst = await waitForInstance(registry.url, "leaky", (i) => i.status === "passing", "the leaky check passing in the catalog");
    const output = inst.checks?.[0]?.output ?? "";
    // The attempt did run and found the variables in the agent's environment: their values are redacted.
    assert.match(output, /ROSTER_NATS_PASSWORD=\[redacted\]/, output);
    assert.match(output, /MY_SERVICE_SECRET=\[redacted\]/, output);
    // Its own environment had none of them (minimal environment).
    assert.match(output, /own-env-pw= own-env-token= own-env-secret=$/m, output);
    await agent.proc.waitForOutput(/"msg":"check changed"/);
    const catalogText = JSON.stringify(await (await fetch(`${registry.url}/v1/catalog`)).json());
    for (const s of secrets) {
      assert.ok(!output.includes(s), "a secret in the check output");
      assert.ok(!catalogText.includes(s), "a secret in /v1/catalog");
      assert.ok(!agent.proc.output.includes(s), "a secret in the agent's log");
      assert.ok(!registry.proc.output.includes(s), "a secret in the registry's log");
    }
    assert.match(agent.proc.output, /\[redacted\]/, "the check's output is logged (redacted)");
  });

  it("security - legit: exec checks get PATH, LANG and exec.passEnv, and their output is capped to exec.maxOutputBytes", async () => {
    const yaml = [
      `host: { id: ${HOST} }`,
      "heartbeat: { interval: 200ms }",
      "drain: { period: 0 }",
      "exec: { passEnv: [CHECK_MODE], maxOutputBytes: 512 }",
      "services:",
      leaky("tuned"),
      `  - { name: chatty, port: 10, address: 127.0.0.1, checks: [{ type: exec, command: ["/bin/sh", "-c", "head -c 200000 /dev/zero | tr '\\\\0' x; echo; echo END"], interval: 300ms }] }`,
      "",
    ].join("\n");
    // The same host id: this agent replaces the first one's instances, as a restart would.
    await killAll(agent.proc);
    tuned = await startAgent(dir, yaml, ["--nats", nats.url, "--api", "127.0.0.1:0"], agentEnv, "tuned.yaml");
    const inst = await waitForInstance(registry.url, "tuned", (i) => i.status === "passing", "tuned passing");
    assert.match(inst.checks?.[0]?.output ?? "", /^mode=fast-mode lang=\S+/m);
    const chatty = await waitForInstance(registry.url, "chatty", (i) => i.status === "passing", "chatty passing");
    const out = chatty.checks?.[0]?.output ?? "";
    assert.ok(Buffer.byteLength(out) <= 512, `${Buffer.byteLength(out)} bytes`);
    assert.match(out, /^exit 0\nx+\nEND$/);
  });
});
