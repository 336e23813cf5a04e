import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import {
  AGENT_WILDCARD,
  DeregisterMessage,
  HealthMessage,
  HeartbeatMessage,
  LIMITS,
  RegisterMessage,
  decode,
  parseAgentSubject,
  type AgentMessageKind,
} from "roster-schemas";
import type { Logger } from "pino";
import type { AgentInput } from "../core/catalog.js";

export type IngestDropReason = "bad-subject" | "too-large" | "not-json" | "invalid" | "host-mismatch" | "handler-error";

export interface DropCounters {
  total: number;
  byReason: Record<string, number>;
  byKind: Record<string, number>;
}

const SCHEMAS = {
  register: RegisterMessage,
  heartbeat: HeartbeatMessage,
  health: HealthMessage,
  deregister: DeregisterMessage,
} as const;

/**
 * Decodes one agent message from its subject and bytes. Never throws. Returns the message, or
 * the reason it must be dropped.
 */
export function decodeAgentMessage(
  subject: string,
  data: Uint8Array,
): { ok: true; msg: AgentInput } | { ok: false; reason: IngestDropReason; kind: AgentMessageKind | "unknown"; error: string } {
  const parsed = parseAgentSubject(subject);
  if (!parsed) return { ok: false, reason: "bad-subject", kind: "unknown", error: `not an agent subject: ${subject.slice(0, 200)}` };
  const r = decode(SCHEMAS[parsed.kind], data, LIMITS.maxMessageBytes);
  if (!r.ok) return { ok: false, reason: r.reason, kind: parsed.kind, error: r.error.slice(0, 500) };
  const msg = r.value as AgentInput;
  if (msg.hostId !== parsed.hostId) {
    return { ok: false, reason: "host-mismatch", kind: parsed.kind, error: `payload hostId "${msg.hostId}" on subject of host "${parsed.hostId}"` };
  }
  return { ok: true, msg };
}

/**
 * Counts dropped messages by reason and kind, and logs at most one warning per reason per
 * `logEveryMs` (with how many were suppressed since).
 */
export class DropLog {
  readonly counters: DropCounters = { total: 0, byReason: {}, byKind: {} };
  /** reason → kind → count (the metrics' `reason`,`kind` labels). */
  readonly byReasonAndKind: Record<string, Record<string, number>> = {};
  private readonly lastLog = new Map<string, { at: number; suppressed: number }>();
  constructor(
    private readonly log: Logger,
    private readonly logEveryMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  drop(reason: string, kind: string, detail: Record<string, unknown>): void {
    this.counters.total++;
    this.counters.byReason[reason] = (this.counters.byReason[reason] ?? 0) + 1;
    this.counters.byKind[kind] = (this.counters.byKind[kind] ?? 0) + 1;
    const kinds = (this.byReasonAndKind[reason] ??= {});
    kinds[kind] = (kinds[kind] ?? 0) + 1;
    const t = this.now();
    const last = this.lastLog.get(reason);
    if (last && t - last.at < this.logEveryMs) {
      last.suppressed++;
      return;
    }
    this.log.warn({ reason, kind, suppressed: last?.suppressed ?? 0, ...detail }, "dropped an agent message");
    this.lastLog.set(reason, { at: t, suppressed: 0 });
  }
}

/** Subscribes to every agent subject and hands valid messages to `handle`. Nothing on the wire can crash it. */
export function startIngest(
  nc: NatsConnection,
  drops: DropLog,
  handle: (msg: AgentInput) => void,
  log: Logger,
): Subscription {
  return nc.subscribe(AGENT_WILDCARD, {
    callback: (err, m) => {
      try {
        if (err) {
          log.warn({ err: String(err) }, "agent subscription error");
          return;
        }
        const r = decodeAgentMessage(m.subject, m.data);
        if (!r.ok) {
          drops.drop(r.reason, r.kind, { subject: m.subject.slice(0, 200), error: r.error });
          return;
        }
        handle(r.msg);
      } catch (e) {
        drops.drop("handler-error", "unknown", { error: String(e) });
      }
    },
  });
}
