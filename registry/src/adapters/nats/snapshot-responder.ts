import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { NAME_PATTERN, PROTOCOL_VERSION, REGISTRY_QUEUE, SNAPSHOT_WILDCARD, SnapshotBusy, SnapshotRequest, decode, encode } from "roster-schemas";
import type { Logger } from "pino";
import type { BulkLane } from "../../core/bulk-lane.js";
import type { DropLog } from "./ingest.js";
import { deadlinePassed, type SnapshotPages } from "./snapshot-pages.js";

export interface SnapshotResponderDeps {
  snapshots: SnapshotPages;
  drops: DropLog;
  logger: Logger;
  /** The bulk lane the requests wait in (core/bulk-lane.ts); its counters are the metrics. */
  lane: BulkLane<PendingSnapshot>;
  /** Counted per answer. */
  served: () => void;
  /** False: every request is answered where it is read (no queue, nothing shed). */
  enabled?: boolean;
  /** Monotonic ms (the lane's clock). */
  clock?: () => number;
  /** Time spent serving from the lane per turn of the event loop before yielding to I/O... */
  turnMs?: number;
  /** ... after at least this many requests (a starved process still makes progress). */
  minPerTurn?: number;
}

export interface PendingSnapshot {
  m: Msg;
  service: string;
  page: number;
  revision?: number;
  /** The requester's deadline (its clock, epoch ms), if it sent one. */
  deadline?: number;
}

/**
 * Answers snapshot requests (`roster.v1.registry.snapshot.<service>`, queue group: any replica
 * answers) from the cached encoded pages. Anyone allowed to publish on the subject may ask; the
 * answer is what every gateway client may read anyway (docs/protocol.md).
 *
 * A request is answered where it is read only while this turn of the event loop has spent less than
 * `turnMs` on bulk work; past that it is queued, and the bulk lane serves the queue a few
 * milliseconds per turn, so agent messages read meanwhile (a health transition) are handled
 * between two turns, never behind a herd of page requests. Past the lane's bounds a
 * request is answered `snapshot-busy` with a retry-after (docs/architecture.md, "Transitions first").
 */
export function startSnapshotResponder(conn: NatsConnection, deps: SnapshotResponderDeps): Subscription {
  const { snapshots, drops, logger: log, lane } = deps;
  const clock = deps.clock ?? (() => performance.now());
  const turnMs = deps.turnMs ?? 4;
  // A turn of a loop saturated by heartbeats can take 100 ms: 16 pages a turn (a cache hit is a
  // copy, ~0.1-0.5 ms) keep snapshots flowing then, and bound what a transition waits behind.
  const minPerTurn = deps.minPerTurn ?? 16;
  let scheduled = false;

  const busy = (p: PendingSnapshot) => {
    try {
      p.m.respond(encode(SnapshotBusy, { v: PROTOCOL_VERSION, kind: "snapshot-busy", service: p.service, retryAfterMs: lane.retryAfterMs() }, "snapshot-busy"));
    } catch (e) {
      log.error({ err: String(e), subject: p.m.subject }, "snapshot busy reply failed");
    }
  };

  // Bulk time spent answering inline in the current turn (reset by the next check phase).
  let spentThisTurn = 0;
  let resetScheduled = false;

  /** Answers one request now (or drops it: its asker is gone). */
  const serve = (p: PendingSnapshot): void => {
    // Waited past its asker's deadline: nobody reads the answer any more.
    if (deadlinePassed(p.deadline, Date.now())) {
      drops.drop("expired", "snapshot", { subject: p.m.subject.slice(0, 200), late: Date.now() - p.deadline! });
      return;
    }
    const t = clock();
    try {
      p.m.respond(snapshots.page(p.service, p.page, p.revision));
      deps.served();
    } catch (e) {
      log.error({ err: String(e), subject: p.m.subject }, "snapshot request failed");
    }
    const took = clock() - t;
    lane.served(took);
    spentThisTurn += took;
    if (!resetScheduled) {
      resetScheduled = true;
      setImmediate(() => {
        spentThisTurn = 0;
        resetScheduled = false;
      });
    }
  };

  const drain = () => {
    scheduled = false;
    const t0 = clock();
    for (let n = 0; ; n++) {
      if (n >= minPerTurn && clock() - t0 >= turnMs) break;
      const p = lane.next();
      if (!p) return;
      serve(p);
    }
    schedule();
  };
  // setImmediate: after the I/O callbacks of this turn, so every socket (the transitions') is read first.
  const schedule = () => {
    if (scheduled || lane.queued === 0) return;
    scheduled = true;
    setImmediate(drain);
  };

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
        let deadline: number | undefined;
        if (m.data.length > 0) {
          const req = decode(SnapshotRequest, m.data);
          if (!req.ok) {
            drops.drop(req.reason, "snapshot", { subject: m.subject.slice(0, 200), error: req.error });
            return;
          }
          page = req.value.page;
          revision = req.value.revision;
          deadline = req.value.deadline;
          // Waited in the queue past its requester's timeout: answering would cost CPU and
          // bandwidth for nobody (and feed a herd's congestion collapse).
          if (deadlinePassed(req.value.deadline, Date.now())) {
            drops.drop("expired", "snapshot", { subject: m.subject.slice(0, 200), late: Date.now() - req.value.deadline! });
            return;
          }
        }
        const pending: PendingSnapshot = { m, service, page, ...(revision !== undefined ? { revision } : {}), ...(deadline !== undefined ? { deadline } : {}) };
        // Answered at once while this turn has spent less than `turnMs` on bulk work and nobody
        // waits before it (a light load pays no queueing); otherwise it waits for the next turns.
        if (deps.enabled === false || (lane.queued === 0 && spentThisTurn < turnMs)) serve(pending);
        else if (!lane.offer(pending, clock())) busy(pending);
        else schedule();
      } catch (e) {
        log.error({ err: String(e), subject: m.subject }, "snapshot request failed");
      }
    },
  });
}
