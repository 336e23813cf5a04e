import type { KvWatchEntry } from "@nats-io/kv";
import type { Logger } from "pino";
import { setTimeout as sleep } from "node:timers/promises";
import type { KvCatalog } from "./kv-catalog.js";

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
  private stopWatch: (() => void) | null = null;
  private lastRevision = 0;
  private caughtUp = false;
  private loop: Promise<void> | null = null;
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
      if (last > this.lastRevision && Date.now() - this.progressAt > this.stallMs && this.stopWatch) {
        this.restarts++;
        this.log.warn({ streamLastSeq: last, applied: this.lastRevision }, "catalog mirror watch stalled: restarting it");
        this.progressAt = Date.now();
        this.stopWatch();
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
    let resolveCaughtUp!: () => void;
    const caughtUp = new Promise<void>((r) => (resolveCaughtUp = r));
    const markCaughtUp = () => {
      if (!this.caughtUp) {
        this.caughtUp = true;
        this.log.info({ revision: this.lastRevision }, "catalog mirror caught up");
      }
      resolveCaughtUp();
    };
    this.loop = (async () => {
      let delay = 100;
      while (!this.stopped) {
        try {
          const kv = this.store.bucket;
          if (this.lastRevision === 0 && (await kv.status()).values === 0) markCaughtUp();
          const iter = await kv.watch(this.lastRevision > 0 ? { key: ">", resumeFromRevision: this.lastRevision + 1 } : { key: ">" });
          if (this.lastRevision > 0) markCaughtUp();
          this.stopWatch = () => iter.stop();
          if (this.stopped) iter.stop();
          for await (const e of iter as AsyncIterable<KvWatchEntry>) {
            if (this.stopped) break;
            if (e.revision <= this.lastRevision) continue;
            // Once caught up, each entry is a change: event streams and blocking queries hear it.
            this.store.applyEntry(e, { live: this.caughtUp });
            this.lastRevision = e.revision;
            this.applied++;
            this.progressAt = Date.now();
            if (e.isUpdate) markCaughtUp();
            delay = 100;
          }
        } catch (err) {
          if (!this.stopped) this.log.warn({ err: String(err), retryInMs: delay }, "catalog mirror watch failed, resuming");
        }
        this.stopWatch = null;
        if (this.stopped) break;
        await sleep(delay);
        delay = Math.min(delay * 2, 2000);
      }
      resolveCaughtUp();
    })();
    return caughtUp;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.watchdog) clearInterval(this.watchdog);
    this.stopWatch?.();
    await this.loop?.catch(() => undefined);
  }
}
