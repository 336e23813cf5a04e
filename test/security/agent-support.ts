// Real processes for the agent-side security tests: the registry and agent bins started as child
// processes on port 0 (the port is read from their log, so no port can be stolen in between),
// raw HTTP with a chosen Host header, and the registry's view of an instance.
import assert from "node:assert/strict";
import { request } from "node:http";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ChildProc, spawnNode, waitFor } from "roster-testkit";

export const root = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..");
export const AGENT = join(root, "agent", "bin", "roster-agent.js");
export const REGISTRY = join(root, "registry", "bin", "roster-registry.js");
export const CLI = join(root, "cli", "bin", "roster.js");

/** An environment without any ROSTER_* variable of the test runner's own. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("ROSTER_")) env[k] = v;
  return { ...env, ROSTER_LOG_PRETTY: "0", ...extra };
}

export async function tempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "roster-security-"));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Starts the registry bin; resolves once it serves HTTP, with its base URL. */
export async function startRegistry(args: string[], env: NodeJS.ProcessEnv = cleanEnv()): Promise<{ proc: ChildProc; url: string }> {
  const proc = spawnNode(REGISTRY, args, { env });
  return started(proc, async () => {
    await proc.waitForOutput(/"msg":"HTTP listening"/, 60_000);
    const m = /"url":"(http:\/\/[^"]+)"[^\n]*"msg":"HTTP listening"/.exec(proc.output);
    assert.ok(m, `no HTTP listening line:\n${proc.output.slice(-2000)}`);
    return { proc, url: m[1]!.replace("0.0.0.0", "127.0.0.1") };
  });
}

/** A process that does not come up is killed (a leaked child would keep the test file alive). */
async function started<T>(proc: ChildProc, ready: () => Promise<T>): Promise<T> {
  try {
    return await ready();
  } catch (err) {
    proc.kill("SIGKILL");
    await proc.exited;
    throw err;
  }
}

/** Writes `yaml` as the agent's config and starts the agent bin; resolves with its API URL. */
export async function startAgent(dir: string, yaml: string, args: string[], env: NodeJS.ProcessEnv = cleanEnv(), name = "agent.yaml"): Promise<{ proc: ChildProc; api: string }> {
  const file = join(dir, name);
  await writeFile(file, yaml);
  const proc = spawnNode(AGENT, ["--config", file, ...args], { env, cwd: dir });
  return started(proc, async () => {
    await proc.waitForOutput(/"msg":"agent started"/, 60_000);
    const m = /"api":"(http:\/\/[^"]+)"/.exec(proc.output);
    assert.ok(m, `no api address in:\n${proc.output.slice(-2000)}`);
    return { proc, api: m[1]!.replace("0.0.0.0", "127.0.0.1") };
  });
}

export interface Raw {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: Record<string, unknown>;
}

/** One HTTP request with exactly the headers given (fetch would not let us forge Host). */
export function raw(method: string, url: string, opts: { headers?: Record<string, string>; body?: unknown } = {}): Promise<Raw> {
  const u = new URL(url);
  const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  const headers: Record<string, string> = { ...(body !== undefined ? { "content-type": "application/json" } : {}), ...opts.headers };
  return new Promise((resolvePromise, reject) => {
    const req = request({ host: u.hostname, port: u.port, path: `${u.pathname}${u.search}`, method, headers }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (text += d));
      res.on("end", () => {
        let json: Record<string, unknown> = {};
        try {
          json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
        } catch {
          // not JSON (HTML, text): text stays
        }
        resolvePromise({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

export interface CatalogInstance {
  id: string;
  service: string;
  status: string;
  address: string;
  port: number;
  checks?: Array<{ id: string; status: string; output?: string }>;
}

/** The registry's instances of a service (HTTP API), [] while it has none. */
export async function catalogInstances(registry: string, service: string, headers: Record<string, string> = {}): Promise<CatalogInstance[]> {
  const res = await fetch(`${registry}/v1/services/${service}/instances`, { headers }).catch(() => null);
  if (!res || res.status !== 200) return [];
  return (await res.json()) as CatalogInstance[];
}

/** Waits until the registry lists `service` with an instance matching `pred`. */
export async function waitForInstance(registry: string, service: string, pred: (i: CatalogInstance) => boolean, what: string, headers: Record<string, string> = {}): Promise<CatalogInstance> {
  return waitFor(async () => (await catalogInstances(registry, service, headers)).find(pred) ?? null, { timeoutMs: 20_000, what });
}

/** SIGKILL every process given (tests end fast; graceful stops are tested elsewhere). */
export async function killAll(...procs: Array<ChildProc | undefined>): Promise<void> {
  for (const p of procs) p?.kill("SIGKILL");
  await Promise.all(procs.map((p) => p?.exited));
}
