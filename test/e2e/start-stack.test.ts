// The README's first command: `npm start` brings the local stack up, answers the example query,
// and Ctrl-C (SIGINT) stops every process it started.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, describe, it } from "node:test";
import { assertNatsServerInstalled, freePort, spawnNode } from "roster-testkit";

const root = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..");

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("start-stack", () => {
  let dir = "";
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("start-stack - starts nats, registry, agent and demo services, then stops them all on Ctrl-C", { timeout: 90_000 }, async (t) => {
    assertNatsServerInstalled();
    // The demo services use fixed ports (examples/agent.yaml): skip only if a developer's own stack runs.
    const { createServer } = await import("node:net");
    const busy = await new Promise<boolean>((r) => {
      const s = createServer().once("error", () => r(true)).listen(18081, "127.0.0.1", () => s.close(() => r(false)));
    });
    if (busy && !process.env.CI) {
      t.skip("port 18081 is in use (is `npm start` running?)");
      return;
    }
    dir = await mkdtemp(join(tmpdir(), "roster-stack-"));
    const http = `127.0.0.1:${await freePort()}`;
    const env = {
      ...process.env,
      ROSTER_STATE_DIR: dir,
      ROSTER_HTTP: http,
      ROSTER_AGENT_API: `127.0.0.1:${await freePort()}`,
      ROSTER_NATS_PORT: String(await freePort()),
      ROSTER_NATS_URL: "",
    };
    const stack = spawnNode(join(root, "scripts", "start-stack.mjs"), [], { cwd: root, env });
    try {
      await stack.waitForOutput("Ctrl-C stops everything", 60_000);
      const res = await fetch(`http://${http}/v1/services/orders/instances?status=passing`);
      assert.equal(res.status, 200);
      const body = (await res.json()) as Array<{ status: string }>;
      assert.equal(body[0]?.status, "passing");
      const pids = (await import("node:child_process"))
        .execFileSync("pgrep", ["-P", String(stack.pid)], { encoding: "utf8" })
        .trim()
        .split("\n")
        .map(Number);
      assert.equal(pids.length, 5, `expected 5 children, got ${pids.join(",")}`);
      stack.kill("SIGINT");
      const exit = await stack.exited;
      assert.equal(exit.code, 0, stack.output.slice(-2000));
      assert.deepEqual(pids.filter(alive), [], "every child stopped");
      assert.match(stack.output, /agent stopped[\s\S]*nats-server stopped/);
    } finally {
      stack.kill("SIGKILL");
    }
  });
});
