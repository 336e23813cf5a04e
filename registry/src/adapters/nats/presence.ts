import type { NatsConnection } from "@nats-io/transport-node";
import { PRESENCE_SUBJECT, PROTOCOL_VERSION, PresenceMessage, encode } from "roster-schemas";
import type { Logger } from "pino";

export interface PresenceDeps {
  registryId: string;
  /** The start of this registry's catalog history: a new one (a restart, or history changed under it) makes every client resync. */
  epoch: () => number;
  intervalMs: number;
  revision: () => number;
  degraded: () => { reason: string; since: number } | null;
  /** False: publish nothing this interval (not the writer, cut off, or the store lost: clients must say stale). */
  publishing: () => boolean;
  logger: Logger;
}

/** Publishes the registry's presence every interval; returns the timer (clear it to stop). */
export function startPresence(conn: NatsConnection, deps: PresenceDeps): NodeJS.Timeout {
  return setInterval(() => {
    try {
      if (!deps.publishing()) return;
      const degraded = deps.degraded();
      conn.publish(
        PRESENCE_SUBJECT,
        encode(PresenceMessage, {
          v: PROTOCOL_VERSION, kind: "presence", registryId: deps.registryId, epoch: deps.epoch(), sentAt: Date.now(), revision: deps.revision(), intervalMs: deps.intervalMs,
          ...(degraded ? { degraded: { reason: degraded.reason, since: degraded.since } } : {}),
        }),
      );
    } catch (err) {
      deps.logger.warn({ err: String(err) }, "presence publish failed");
    }
  }, deps.intervalMs);
}
