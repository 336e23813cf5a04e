import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { AgentMessage, decode } from "roster-schemas";

/** Repository root (tests run from agent/dist/test/integration). */
export const ROOT = fileURLToPath(new URL("../../../../", import.meta.url));
export const AGENT_BIN = join(ROOT, "agent/bin/roster-agent.js");
export const DEMO_SERVICE = join(ROOT, "examples/demo-service.mjs");

export interface Seen {
  at: number;
  subject: string;
  msg: AgentMessage;
}

/** Records every valid agent message of one host, as the registry would see them. */
export class Wire {
  readonly seen: Seen[] = [];
  invalid = 0;
  private constructor(readonly nc: NatsConnection) {}

  static async watch(url: string, hostId: string): Promise<Wire> {
    const nc = await connect({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    const wire = new Wire(nc);
    nc.subscribe(`roster.v1.agent.${hostId}.*`, {
      callback: (_err, m) => {
        const r = decode(AgentMessage, m.data);
        if (!r.ok) {
          wire.invalid += 1;
          return;
        }
        wire.seen.push({ at: performance.now(), subject: m.subject, msg: r.value });
      },
    });
    await nc.flush();
    return wire;
  }

  of<K extends AgentMessage["kind"]>(kind: K, since = 0): Array<Extract<AgentMessage, { kind: K }> & { at: number }> {
    return this.seen.filter((s) => s.msg.kind === kind && s.at >= since).map((s) => ({ ...(s.msg as Extract<AgentMessage, { kind: K }>), at: s.at }));
  }

  async close(): Promise<void> {
    await this.nc.close();
  }
}

export async function tempConfig(name: string, text: string): Promise<{ file: string; dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "roster-agent-test-"));
  const file = join(dir, name);
  await writeFile(file, text);
  return { file, dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export async function httpJson(method: string, url: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const init: RequestInit = { method };
  if (body !== undefined) {
    init.headers = { "content-type": "application/json" };
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}
