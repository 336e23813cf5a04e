import { JetStreamApiError, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { createBucket, type Replicas } from "roster-runtime";
import type { Logger } from "pino";
import { StoreLostError } from "../../errors.js";

/** A bucket the registry owns and must find again after a NATS node comes back empty. */
export interface GuardedBucket {
  name: string;
  replicas: Replicas;
  /** The highest revision this process knows in the bucket (0 if none): the store must not be behind it. */
  revision(): number;
}

export interface StoreGuardOptions {
  buckets: GuardedBucket[];
  /** How often the buckets are checked while all is well (while lost: 4× as often). */
  intervalMs: number;
  logger: Logger;
  /** False while our own NATS connection is down: nothing can be judged then. */
  connected: () => boolean;
  onLost(reason: string): void;
  /** The buckets exist again; `recreated`: their content was lost (rewrite, resync). */
  onRestored(recreated: boolean): void;
}

// 10039 JetStream not enabled for the account, 10076 not enabled, 10059 stream not found.
const GONE_CODES = new Set([10039, 10076, 10059]);

/** True for the answers that mean "the stream is not there" (not "no answer yet"). */
export function storeGone(err: unknown): boolean {
  // JetStreamNotEnabled (a publish nobody answers: no stream on the subject) is not exported.
  if (err instanceof Error && (err.name === "JetStreamNotEnabled" || err.constructor.name === "JetStreamNotEnabled")) return true;
  if (err instanceof JetStreamApiError) return GONE_CODES.has(err.code);
  return /jetstream is not enabled|stream not found/i.test(String(err));
}

const streamOf = (bucket: string) => `KV_${bucket}`;

/**
 * Notices within one interval that the registry's buckets are gone (a NATS node back with an
 * empty store, JetStream off, a stream deleted) or behind what this process wrote (a store from
 * an older backup), says so (`available`), and recreates them. A recreated bucket's sequence is
 * moved past the last revision this process knew (a purge to that sequence), so catalog revisions
 * keep growing for every mirror and blocking query. A timeout is not evidence: across a NATS leader
 * election the streams are there but do not answer.
 */
export class StoreGuard {
  available = true;
  losses = 0;
  recreations = 0;
  lostAt: number | null = null;
  private readonly nc: NatsConnection;
  private readonly opts: StoreGuardOptions;
  private readonly log: Logger;
  private jsm: JetStreamManager | null = null;
  private timer: NodeJS.Timeout | null = null;
  private checking: Promise<void> | null = null;
  private closed = false;

  constructor(nc: NatsConnection, opts: StoreGuardOptions) {
    this.nc = nc;
    this.opts = opts;
    this.log = opts.logger;
  }

  start(): void {
    this.schedule();
  }

  /** A write failed: if the error says the store is gone, check now instead of at the next interval. */
  suspect(err: unknown): void {
    if (this.available && storeGone(err)) void this.check();
  }

  /** Checks every bucket now (coalesced with a check under way). */
  check(): Promise<void> {
    this.checking ??= this.run().finally(() => (this.checking = null));
    return this.checking;
  }

  stop(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(): void {
    if (this.closed) return;
    const ms = this.available ? this.opts.intervalMs : Math.max(50, Math.floor(this.opts.intervalMs / 4));
    this.timer = setTimeout(() => void this.check().finally(() => this.schedule()), ms);
    this.timer.unref();
  }

  private async manager(): Promise<JetStreamManager> {
    // checkAPI off: the account check itself fails while JetStream is off, which is what we probe.
    this.jsm ??= await jetstreamManager(this.nc, { checkAPI: false, timeout: Math.max(500, this.opts.intervalMs) });
    return this.jsm;
  }

  private async run(): Promise<void> {
    if (this.closed || this.nc.isClosed() || !this.opts.connected()) return;
    const jsm = await this.manager();
    const gone: GuardedBucket[] = [];
    let why = "";
    for (const b of this.opts.buckets) {
      try {
        // Read before asking: writes acked while the answer travels would otherwise look like a
        // store behind us (under a storm of pipelined writes, every few seconds).
        const known = b.revision();
        const info = await jsm.streams.info(streamOf(b.name));
        if (info.state.last_seq < known) {
          gone.push(b);
          why = `bucket ${b.name} is behind this registry (sequence ${info.state.last_seq} < revision ${known})`;
        }
      } catch (err) {
        if (!storeGone(err)) return; // no answer: not evidence of anything
        gone.push(b);
        why = `bucket ${b.name}: ${String(err)}`;
      }
    }
    if (gone.length === 0) {
      if (!this.available) this.restored(false);
      return;
    }
    if (this.available) {
      this.available = false;
      this.losses++;
      this.lostAt = Date.now();
      const e = new StoreLostError(why);
      this.log.error({ code: e.code, reason: why }, "catalog store lost: not writing until the buckets are back");
      this.opts.onLost(why);
    }
    try {
      for (const b of gone) await this.recreate(jsm, b);
    } catch (err) {
      this.log.warn({ err: String(err) }, "recreating the catalog buckets failed, retrying");
      return;
    }
    this.restored(true);
  }

  private async recreate(jsm: JetStreamManager, b: GuardedBucket): Promise<void> {
    await createBucket(this.nc, b.name, { replicas: b.replicas, history: 1, logger: this.log });
    const info = await jsm.streams.info(streamOf(b.name));
    const next = b.revision() + 1;
    // Only an empty stream is moved (a purge to a sequence removes every message below it).
    if (info.state.messages === 0 && info.state.last_seq + 1 < next) await jsm.streams.purge(streamOf(b.name), { seq: next });
    this.log.warn({ bucket: b.name, firstRevision: next }, "catalog bucket recreated");
  }

  private restored(recreated: boolean): void {
    this.available = true;
    if (recreated) this.recreations++;
    this.log.info({ recreated, lostForMs: this.lostAt ? Date.now() - this.lostAt : 0 }, "catalog store available again");
    this.lostAt = null;
    this.opts.onRestored(recreated);
  }
}
