import type { Logger } from "pino";
import type { KvCatalog } from "./kv-catalog.js";
import { watchKv, type KvWatchLoop } from "./kv-watch-loop.js";

/**
 * A standby registry's copy of the catalog: a KV watch of the whole bucket applied to the same
 * CatalogMemory the leader fills from its own writes, so the HTTP API, blocking queries and
 * snapshots of a standby serve the current catalog. A watch that ends is resumed from the
 * revision after the last one applied (the bucket keeps the last value of every key).
 *
 * A watch is an ordered consumer hosted by the stream leader: when that node dies, the client only
 * notices after missed idle heartbeats (10 s and more). A watchdog compares the stream's last
 * sequence with the last revision applied every second and restarts a watch that is behind and
 * has not moved for `stallMs`, so a standby's reads are current again soon after an election.
 */
export class KvCatalogFollower {
  private readonly store: KvCatalog;
  private readonly log: Logger;
  private stopped = false;
  private watch: KvWatchLoop | null = null;
  private caughtUp = false;
  private progressAt = Date.now();
  private watchdog: NodeJS.Timeout | null = null;
  private checking = false;
  /** Entries applied (for status and tests). */
  applied = 0;
  /** Watches restarted because they had stalled. */
  restarts = 0;

  constructor(store: KvCatalog, logger: Logger, private readonly stallMs = 1500) {
    this.store = store;
    this.log = logger;
  }

  private async checkStall(): Promise<void> {
    if (this.checking || this.stopped || !this.caughtUp) return;
    this.checking = true;
    try {
      const last = (await this.store.bucket.status()).streamInfo.state.last_seq;
      const applied = this.watch?.lastRevision ?? 0;
      if (last > applied && Date.now() - this.progressAt > this.stallMs && this.watch?.watching) {
        this.restarts++;
        this.log.warn({ streamLastSeq: last, applied }, "catalog mirror watch stalled: restarting it");
        this.progressAt = Date.now();
        this.watch.restart();
      }
    } catch {
      // no stream info during an election: the next check tells
    } finally {
      this.checking = false;
    }
  }

  /** True once the initial values have been applied (the mirror then follows within milliseconds). */
  get current(): boolean {
    return this.caughtUp && !this.stopped;
  }

  /** Starts watching; resolves once the mirror holds every current value (or it is stopped). */
  start(): Promise<void> {
    this.watchdog = setInterval(() => void this.checkStall(), 1000);
    this.watch = watchKv(this.store.bucket, {
      what: "catalog mirror watch",
      log: this.log,
      apply: (e) => {
        // Once caught up, each entry is a change: event streams and blocking queries hear it.
        this.store.applyEntry(e, { live: this.caughtUp });
        this.applied++;
        this.progressAt = Date.now();
      },
      onCaughtUp: () => {
        this.caughtUp = true;
        this.log.info({ revision: this.watch?.lastRevision ?? 0 }, "catalog mirror caught up");
      },
    });
    return this.watch.caughtUp;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.watchdog) clearInterval(this.watchdog);
    await this.watch?.stop();
  }
}
