import type { KV, KvWatchEntry } from "@nats-io/kv";
import type { Logger } from "pino";
import { setTimeout as sleep } from "node:timers/promises";

/** A watch of a whole KV bucket that survives errors: see watchKv. */
export interface KvWatchLoop {
  /** Resolves once every current value has been applied (or the loop is stopped). */
  readonly caughtUp: Promise<void>;
  /** Highest revision applied (0 before the first). */
  readonly lastRevision: number;
  /** True while a watch is open. */
  readonly watching: boolean;
  /** Ends the open watch; the loop resumes after the last revision applied (for a stalled watch). */
  restart(): void;
  /** Stops for good; resolves once the loop has ended. */
  stop(): Promise<void>;
}

/**
 * Watches every key of `kv` from the start, then, whenever the watch ends or fails, from the
 * revision after the last one applied (the bucket keeps the last value of every key), with a
 * backoff of 100 ms doubling to 2 s. `apply` sees each entry once, in revision order;
 * `onCaughtUp` is called once, when the initial values have all been applied.
 */
export function watchKv(kv: KV, opts: { what: string; log: Logger; apply: (e: KvWatchEntry) => void; onCaughtUp?: () => void }): KvWatchLoop {
  let stopped = false;
  let lastRevision = 0;
  let caughtUp = false;
  let stopWatch: (() => void) | null = null;
  let resolveCaughtUp!: () => void;
  const ready = new Promise<void>((r) => (resolveCaughtUp = r));
  const markCaughtUp = () => {
    if (!caughtUp) {
      caughtUp = true;
      opts.onCaughtUp?.();
    }
    resolveCaughtUp();
  };
  const loop = (async () => {
    let delay = 100;
    while (!stopped) {
      try {
        if (lastRevision === 0 && (await kv.status()).values === 0) markCaughtUp();
        const iter = await kv.watch(lastRevision > 0 ? { key: ">", resumeFromRevision: lastRevision + 1 } : { key: ">" });
        if (lastRevision > 0) markCaughtUp();
        stopWatch = () => iter.stop();
        if (stopped) iter.stop();
        for await (const e of iter as AsyncIterable<KvWatchEntry>) {
          if (stopped) break;
          if (e.revision <= lastRevision) continue;
          opts.apply(e);
          lastRevision = e.revision;
          // The last of the initial values is flagged isUpdate, as is every later one.
          if (e.isUpdate) markCaughtUp();
          delay = 100;
        }
      } catch (err) {
        if (!stopped) opts.log.warn({ err: String(err), retryInMs: delay }, `${opts.what} failed, resuming`);
      }
      stopWatch = null;
      if (stopped) break;
      await sleep(delay);
      delay = Math.min(delay * 2, 2000);
    }
    resolveCaughtUp();
  })();
  return {
    caughtUp: ready,
    get lastRevision() {
      return lastRevision;
    },
    get watching() {
      return stopWatch !== null;
    },
    restart: () => stopWatch?.(),
    stop: async () => {
      stopped = true;
      stopWatch?.();
      await loop.catch(() => undefined);
    },
  };
}
