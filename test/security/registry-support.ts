// Real processes for the registry-side security tests: the roster-registry and roster-agent bins
// as child processes, an HTTP helper, a raw publisher of forged agent messages, and a process's RSS.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { RegisterMessage, agentSubject, encode, type InstanceRegistration } from "roster-schemas";
import { ChildProc, spawnNode, waitFor } from "roster-testkit";

export const root = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..");
export const REGISTRY_BIN = join(root, "registry", "bin", "roster-registry.js");
export const AGENT_BIN = join(root, "agent", "bin", "roster-agent.js");
export const CLI_BIN = join(root, "cli", "bin", "roster.js");

export interface RegistryProc {
  proc: ChildProc;
  base: string;
  stop(): Promise<unknown>;
}

/** Starts roster-registry on an ephemeral HTTP port (read from its log) and waits for /readyz. */
export async function startRegistryProc(dir: string, natsUrl: string, config: Record<string, unknown>, env: Record<string, string> = {}): Promise<RegistryProc> {
  const file = join(dir, `registry-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(file, JSON.stringify({ tickInterval: "50ms", presenceInterval: "200ms", ...config }));
  const proc = spawnNode(REGISTRY_BIN, ["--nats", natsUrl, "--http", "127.0.0.1:0", "--config", file], { env: { ...process.env, ...env } });
  await proc.waitForOutput(/"msg":"HTTP listening"/, 20_000);
  const m = /"url":"(http:\/\/127\.0\.0\.1:\d+)"[^\n]*"msg":"HTTP listening"/.exec(proc.output);
  assert.ok(m, `no HTTP listening line:\n${proc.output.slice(-2000)}`);
  const base = m[1]!;
  await waitFor(async () => (await fetch(`${base}/readyz`).catch(() => null))?.status === 200, { timeoutMs: 20_000, what: `registry ${base} ready` });
  return { proc, base, stop: () => proc.stop() };
}

/** Starts roster-agent with a YAML config (host id, 200 ms heartbeat, services without checks). */
export async function startAgentProc(
  dir: string,
  natsUrl: string,
  hostId: string,
  services: Array<{ name: string; id: string; port: number; address: string }>,
  env: Record<string, string> = {},
): Promise<ChildProc> {
  const file = join(dir, `agent-${hostId}.yaml`);
  await writeFile(
    file,
    [
      `host: { id: ${hostId} }`,
      "heartbeat: { interval: 200ms }",
      "drain: { period: 100ms }",
      "services:",
      ...services.map((s) => `  - { name: ${s.name}, id: ${s.id}, port: ${s.port}, address: ${s.address} }`),
      "",
    ].join("\n"),
  );
  const proc = spawnNode(AGENT_BIN, ["--config", file, "--nats", natsUrl, "--api", "127.0.0.1:0"], { env: { ...process.env, ...env } });
  await proc.waitForOutput("agent started", 20_000);
  return proc;
}

export interface PublicInstance {
  id: string;
  service: string;
  host: string;
  address: string;
  port: number;
  status: string;
}

export async function getJson<T>(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: T }> {
  const r = await fetch(url, { headers });
  const text = await r.text();
  return { status: r.status, body: (text ? JSON.parse(text) : undefined) as T };
}

export async function instancesOf(base: string, service: string, headers: Record<string, string> = {}): Promise<PublicInstance[]> {
  const r = await getJson<PublicInstance[]>(`${base}/v1/services/${service}/instances`, headers);
  return r.status === 200 ? r.body : [];
}

export interface Status {
  drops: { total: number; byReason: Record<string, number> };
  resyncsPublished: number;
  ignored: Record<string, number>;
}

export async function statusOf(base: string, headers: Record<string, string> = {}): Promise<Status> {
  return (await getJson<Status>(`${base}/v1/status`, headers)).body;
}

/** A register in `hostId`'s name, as anyone with a connection allowed to publish on its subject could send. */
export async function forgeRegister(
  nc: NatsConnection,
  hostId: string,
  fields: { epoch: number; seq?: number; heartbeatIntervalMs: number; instances: InstanceRegistration[] },
): Promise<void> {
  nc.publish(
    agentSubject(hostId, "register"),
    encode(RegisterMessage, { v: 1, kind: "register", hostId, epoch: fields.epoch, seq: fields.seq ?? 1, sentAt: Date.now(), heartbeatIntervalMs: fields.heartbeatIntervalMs, instances: fields.instances }),
  );
  await nc.flush();
}

export function instance(id: string, address: string, port = 8080, service = "orders"): InstanceRegistration {
  return { id, service, address, port, tags: [], meta: {}, weight: 100, status: "passing", checks: [] };
}

/** Resident set size of a process, from /proc (Linux). */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  assert.ok(m, "VmRSS in /proc/<pid>/status");
  return Number(m[1]) * 1024;
}
