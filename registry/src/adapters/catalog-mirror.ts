import type { KvWatchEntry } from "@nats-io/kv";
import type { Logger } from "pino";
import { setTimeout as sleep } from "node:timers/promises";
import type { KvCatalog } from "./kv-catalog.js";

/**
 * A standby registry's copy of the catalog: a KV watch of the whole bucket applied to the same
 * CatalogMemory the leader fills from its own writes, so the HTTP API, blocking queries and
 * snapshots of a standby serve the current catalog. A watch that ends is resumed from the
 * revision after the last one applied (the bucket keeps the last value of every key).
 */
export class CatalogMirror {
  private readonly store: KvCatalog;
  private readonly log: Logger;
  private stopped = false;
  private stopWatch: (() => void) | null = null;
  private lastRevision = 0;
  private caughtUp = false;
  private loop: Promise<void> | null = null;
  /** Entries applied (for status and tests). */
  applied = 0;

  constructor(store: KvCatalog, logger: Logger) {
    this.store = store;
    this.log = logger;
  }

  /** True once the initial values have been applied (the mirror then follows within milliseconds). */
  get current(): boolean {
    return this.caughtUp && !this.stopped;
  }

  /** Starts watching; resolves once the mirror holds every current value (or it is stopped). */
  start(): Promise<void> {
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
            this.store.applyEntry(e);
            this.lastRevision = e.revision;
            this.applied++;
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
    this.stopWatch?.();
    await this.loop?.catch(() => undefined);
  }
}
