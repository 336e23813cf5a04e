// The roster-registry process with credentials from the environment: NATS nkey seed file and
// HTTP tokens (ROSTER_HTTP_READ_TOKEN / ROSTER_HTTP_WRITE_TOKEN); a bad secret exits 1 naming it.
import assert from "node:assert/strict";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { ChildProc, freePort, spawnNode, startSecuredNats, type SecuredNats } from "roster-testkit";

const BIN = join(resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..", ".."), "bin", "roster-registry.js");
const READ = "cli-read-token-0123456789";

describe("registry cli with credentials", () => {
  let nats: SecuredNats;
  let proc: ChildProc | undefined;

  before(async () => {
    nats = await startSecuredNats({ hosts: ["host-a"], gateways: 0 });
  });
  after(async () => {
    await proc?.stop();
    await nats?.close();
  });

  it("cli-auth - an unreadable NATS seed file exits 1 naming the field", async () => {
    const p = spawnNode(BIN, ["--nats", nats.url, "--http", "127.0.0.1:0"], { env: { ...process.env, ROSTER_NATS_NKEY_SEED_FILE: "/nonexistent/seed.nk" } });
    const exit = await p.exited;
    assert.equal(exit.code, 1);
    assert.match(p.output, /ROSTER_CONFIG_INVALID/);
    assert.match(p.output, /nats\.nkeySeedFile: cannot read \/nonexistent\/seed\.nk: ENOENT/);
    assert.doesNotMatch(p.output, /\n\s+at /);
  });

  it("cli-auth - logs in with its nkey; the HTTP API wants the env token, probes stay open", async () => {
    const port = await freePort();
    const env = { ...process.env, ...(await nats.env("registry")), ROSTER_HTTP_READ_TOKEN: READ };
    proc = spawnNode(BIN, ["--nats", `nats://u:hunter2@127.0.0.1:${await freePort()},${nats.url}`, "--http", `127.0.0.1:${port}`], { env });
    await proc.waitForOutput("registry ready");
    const base = `http://127.0.0.1:${port}`;
    assert.equal((await fetch(`${base}/readyz`)).status, 200);
    const denied = await fetch(`${base}/v1/services`);
    assert.equal(denied.status, 401);
    assert.equal(((await denied.json()) as { code: string }).code, "ROSTER_UNAUTHORIZED");
    assert.equal((await fetch(`${base}/v1/services`, { headers: { authorization: `Bearer ${READ}` } })).status, 200);
    assert.doesNotMatch(proc.output, /hunter2|SU[A-Z2-7]{56}/, "a secret reached the log");
  });
});
