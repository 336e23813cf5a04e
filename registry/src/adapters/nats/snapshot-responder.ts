import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { NAME_PATTERN, REGISTRY_QUEUE, SNAPSHOT_WILDCARD, SnapshotRequest, decode } from "roster-schemas";
import type { Logger } from "pino";
import type { DropLog } from "./ingest.js";
import { deadlinePassed, type SnapshotPages } from "./snapshot-pages.js";

export interface SnapshotResponderDeps {
  snapshots: SnapshotPages;
  drops: DropLog;
  logger: Logger;
  /** Counted per answer. */
  served: () => void;
}

/**
 * Answers snapshot requests (`roster.v1.registry.snapshot.<service>`, queue group: any replica
 * answers) from the cached encoded pages. Anyone allowed to publish on the subject may ask; the
 * answer is what every gateway client may read anyway (docs/protocol.md).
 */
export function startSnapshotResponder(conn: NatsConnection, deps: SnapshotResponderDeps): Subscription {
  const { snapshots, drops, logger: log } = deps;
  return conn.subscribe(SNAPSHOT_WILDCARD, {
    queue: REGISTRY_QUEUE,
    callback: (err, m) => {
      try {
        if (err) return;
        if (!m.reply) {
          drops.drop("no-reply", "snapshot", { subject: m.subject.slice(0, 200) });
          return;
        }
        const service = m.subject.slice(m.subject.lastIndexOf(".") + 1);
        if (!NAME_PATTERN.test(service)) {
          drops.drop("bad-subject", "snapshot", { subject: m.subject.slice(0, 200) });
          return;
        }
        // An empty body asks for page 0 (every service that fits one message).
        let page = 0;
        let revision: number | undefined;
        if (m.data.length > 0) {
          const req = decode(SnapshotRequest, m.data);
          if (!req.ok) {
            drops.drop(req.reason, "snapshot", { subject: m.subject.slice(0, 200), error: req.error });
            return;
          }
          page = req.value.page;
          revision = req.value.revision;
          // Waited in the queue past its requester's timeout: answering would cost CPU and
          // bandwidth for nobody (and feed a herd's congestion collapse).
          if (deadlinePassed(req.value.deadline, Date.now())) {
            drops.drop("expired", "snapshot", { subject: m.subject.slice(0, 200), late: Date.now() - req.value.deadline! });
            return;
          }
        }
        m.respond(snapshots.page(service, page, revision));
        deps.served();
      } catch (e) {
        log.error({ err: String(e), subject: m.subject }, "snapshot request failed");
      }
    },
  });
}
