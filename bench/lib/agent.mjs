// The agent as a real child process (its bin) with a generated JSON config file.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ChildProc, freePort } from "roster-testkit";

export const AGENT_BIN = fileURLToPath(new URL("../../agent/bin/roster-agent.js", import.meta.url));

/**
 * Writes `config` (the agent's config file shape; `api.listen` defaults to a free port) to
 * a temp file and starts `roster-agent --config <file> --nats <url>`.
 * Returns { child, pid, config, stop() }.
 */
export async function startAgent({ natsUrl, config, env = {} }) {
  const dir = await mkdtemp(join(tmpdir(), "roster-bench-agent-"));
  const full = { ...config, api: config.api ?? { listen: `127.0.0.1:${await freePort()}` } };
  const file = join(dir, "agent.json");
  await writeFile(file, JSON.stringify(full, null, 2));
  const child = new ChildProc(process.execPath, [AGENT_BIN, "--config", file, "--nats", natsUrl], {
    env: { ...process.env, ROSTER_LOG_LEVEL: process.env.ROSTER_LOG_LEVEL ?? "warn", ...env },
  });
  return {
    child,
    pid: child.pid,
    config: full,
    async stop() {
      await child.stop(10_000);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
