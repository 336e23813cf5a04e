// The registry as a real child process (its bin), on a free HTTP port.
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ChildProc, freePort, waitFor } from "roster-testkit";
import { getJson } from "./http.mjs";

export const REGISTRY_BIN = fileURLToPath(new URL("../../registry/bin/roster-registry.js", import.meta.url));

/**
 * Starts `roster-registry --nats <url> --http 127.0.0.1:<port>` and waits for /readyz.
 * Returns { child, pid, httpUrl, stop() }. `bin`: another build's registry (a before/after comparison). BENCH_REGISTRY_NODE_ARGS (e.g. "--cpu-prof
 * --cpu-prof-dir=/tmp/prof") are given to node before the bin: how the registry is profiled under
 * a benchmark's load (the profile is written on its clean SIGTERM exit). BENCH_REGISTRY_LOG=<file>:
 * the registry's output (its log lines, level ROSTER_LOG_LEVEL, default warn) is written there every 2 s and when it stops.
 */
export async function startRegistry({ natsUrl, args = [], env = {}, readyTimeoutMs = 30_000, bin = REGISTRY_BIN }) {
  const port = await freePort();
  const child = new ChildProc(
    process.execPath,
    [...(process.env.BENCH_REGISTRY_NODE_ARGS?.split(" ").filter(Boolean) ?? []), bin, "--nats", natsUrl, "--http", `127.0.0.1:${port}`, ...args],
    { env: { ...process.env, ROSTER_LOG_LEVEL: process.env.ROSTER_LOG_LEVEL ?? "warn", ...env } },
  );
  const httpUrl = `http://127.0.0.1:${port}`;
  try {
    await waitFor(
      async () => {
        if (!child.alive) throw new Error(`registry exited: ${child.output.slice(-2000)}`);
        const r = await getJson(`${httpUrl}/readyz`, { timeoutMs: 2000 });
        return r.status === 200;
      },
      { timeoutMs: readyTimeoutMs, intervalMs: 100, what: "registry /readyz" },
    );
  } catch (err) {
    child.kill("SIGKILL");
    throw new Error(`${err.message}\nregistry output:\n${child.output.slice(-3000)}`);
  }
  const logFile = process.env.BENCH_REGISTRY_LOG;
  const saveLog = () => logFile && writeFileSync(logFile, child.output);
  const logTimer = logFile ? setInterval(saveLog, 2000).unref() : undefined;
  const stop = async () => {
    clearInterval(logTimer);
    await child.stop(5000);
    saveLog();
  };
  return { child, pid: child.pid, httpUrl, stop };
}
