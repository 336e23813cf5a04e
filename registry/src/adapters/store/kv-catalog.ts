import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import type { KV, KvWatchEntry } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  CATALOG_BUCKET,
  CatalogDelta,
  CatalogInstance,
  PROTOCOL_VERSION,
  catalogKey,
  catalogSubject,
  decode,
  encode,
  encodeWithJson,
  encodeWithinLimit,
  parseCatalogKey,
} from "roster-schemas";
import { openBucket, type Replicas } from "roster-runtime";
import type { Logger } from "pino";
import { setTimeout as sleep } from "node:timers/promises";
import { KvWriteError } from "../../errors.js";
import type { CatalogMemory } from "./catalog-memory.js";

export interface KvCatalogOptions {
  replicas: Replicas;
  /** Longest time one write is retried on transient errors. */
  retryForMs: number;
  logger: Logger;
  /** Called when a write is given up, so the app can reconcile later. */
  onWriteFailed?: (err: KvWriteError) => void;
  /** Called after each successful write (for counters and tests). */
  onWritten?: (delta: CatalogDelta) => void;
  /**
   * Asked before every write attempt (registry replicas: the writer lease): "write", "hold"
   * (wait, keep the queue: the lease is uncertain) or "drop" (not the writer: discard the write).
   */
  gate?: () => WriteGate;
  /** Called with every failed write attempt (the store guard looks for "the bucket is gone"). */
  onError?: (err: unknown) => void;
}

export type WriteGate = "write" | "hold" | "drop";

/** A write discarded because this registry is not (or no longer) the writer. */
class FencedError extends Error {}

export interface KvCatalogStats {
  writes: number;
  conflicts: number;
  retries: number;
  failures: number;
  corruptRecords: number;
  pending: number;
  /** Writes discarded because this registry was not the writer (lease lost or never held). */
  fenced: number;
}

type Desired = CatalogInstance | null;

const isConflict = (err: unknown) =>
  err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamWrongLastSequence;

/**
 * A put delta (CatalogDelta, op "put") around the record's JSON as validated and encoded for its KV
 * write: the record is not validated or serialised a second time (it was 2 of the 4 zod passes
 * and JSON encodings per instance in a registration storm). The envelope adds only the names
 * already validated in the record and two KV revisions; keys in the schema's order.
 */
export function putDeltaBytes(service: string, id: string, revision: number, prevRevision: number, recordJson: string): Uint8Array {
  const head = `{"v":${PROTOCOL_VERSION},"kind":"delta","op":"put","service":${JSON.stringify(service)},"instanceId":${JSON.stringify(id)}`;
  return encodeWithinLimit(`${head},"revision":${revision},"prevRevision":${prevRevision},"instance":${recordJson}}`, "catalog delta");
}

/**
 * The catalog in JetStream KV. Writes are serialised per service (one worker per service,
 * different services in parallel) and coalesced per key: while a key waits, only its latest
 * desired value is kept. Each write: KV CAS put/delete → revision → memory → delta publish.
 */
export class KvCatalog {
  private readonly kv: KV;
  private readonly nc: NatsConnection;
  private readonly memory: CatalogMemory;
  private readonly opts: KvCatalogOptions;
  private readonly log: Logger;
  /** Current KV revision of each key (delete markers included): the CAS expectation. */
  private readonly keyRev = new Map<string, number>();
  private readonly pending = new Map<string, Map<string, Desired>>();
  private readonly workers = new Map<string, Promise<void>>();
  private closed = false;
  readonly stats: KvCatalogStats = { writes: 0, conflicts: 0, retries: 0, failures: 0, corruptRecords: 0, pending: 0, fenced: 0 };

  private constructor(nc: NatsConnection, kv: KV, memory: CatalogMemory, opts: KvCatalogOptions) {
    this.nc = nc;
    this.kv = kv;
    this.memory = memory;
    this.opts = opts;
    this.log = opts.logger;
  }

  /** Creates or binds the bucket (history 1), retrying while JetStream is unavailable. */
  static async open(nc: NatsConnection, memory: CatalogMemory, opts: KvCatalogOptions, signal?: AbortSignal): Promise<KvCatalog> {
    const kv = await openBucket(nc, CATALOG_BUCKET, { replicas: opts.replicas, logger: opts.logger, ...(signal ? { signal } : {}) });
    return new KvCatalog(nc, kv, memory, opts);
  }

  /** The bucket was recreated empty (StoreGuard): no key has a revision any more. */
  storeRecreated(): void {
    this.keyRev.clear();
  }

  /**
   * Reads every current entry (delete markers included) into memory and returns the live
   * records. A delete marker keeps its service known with its last revision. Throws when the
   * read stops before the last entry (then the caller retries).
   */
  async load(idleTimeoutMs = 10_000): Promise<CatalogInstance[]> {
    const status = await this.kv.status();
    if (status.values === 0) return [];
    const iter = await this.kv.watch({ key: ">" });
    const records: CatalogInstance[] = [];
    let complete = false;
    // Idle, not total: a big catalog may take long, a watch whose consumer died (its stream
    // leader was killed) delivers nothing more.
    let timer = setTimeout(() => iter.stop(), idleTimeoutMs);
    try {
      for await (const e of iter as AsyncIterable<KvWatchEntry>) {
        clearTimeout(timer);
        timer = setTimeout(() => iter.stop(), idleTimeoutMs);
        this.applyEntry(e, { records });
        // The last of the initial values is flagged isUpdate (see KV watch): stop there.
        if (e.isUpdate) {
          complete = true;
          break;
        }
      }
    } finally {
      clearTimeout(timer);
      iter.stop();
    }
    // A partial catalog must never be taken for the whole one: the caller retries.
    if (!complete) throw new Error(`catalog load incomplete: ${records.length} of ${status.values} records, then nothing for ${idleTimeoutMs} ms`);
    return records;
  }

  /** The bucket itself (for the standby's mirror watch). */
  get bucket(): KV {
    return this.kv;
  }

  /**
   * Applies one KV entry (a load or a mirror watch) to memory and to the CAS expectations. `live`:
   * a change a caught-up standby's mirror saw happen, which memory's change listeners (event
   * streams, their ring, blocking queries) hear as they do the writer's own writes; a value loaded
   * at start is not a change.
   */
  applyEntry(e: KvWatchEntry, opts: { records?: CatalogInstance[]; live?: boolean } = {}): void {
    const parsed = parseCatalogKey(e.key);
    if (!parsed) {
      this.stats.corruptRecords++;
      this.log.warn({ key: e.key }, "ignoring a catalog key that is not <service>.<instanceId>");
      return;
    }
    const put = (record: CatalogInstance | null) =>
      opts.live ? this.memory.apply(parsed.service, parsed.instanceId, e.revision, record) : this.memory.load(parsed.service, parsed.instanceId, e.revision, record);
    this.keyRev.set(e.key, e.revision);
    if (e.operation !== "PUT") {
      put(null);
      return;
    }
    const r = decode(CatalogInstance, e.value);
    if (!r.ok || r.value.service !== parsed.service || r.value.id !== parsed.instanceId) {
      this.stats.corruptRecords++;
      this.log.warn({ key: e.key, error: r.ok ? "key/record mismatch" : r.error }, "ignoring a corrupt catalog record");
      put(null);
      return;
    }
    put(r.value);
    opts.records?.push(r.value);
  }

  /** Queues a put (record) or delete (null); returns at once. */
  enqueue(service: string, id: string, desired: Desired): void {
    if (this.closed) return;
    let p = this.pending.get(service);
    if (!p) {
      p = new Map();
      this.pending.set(service, p);
    }
    // Re-insert at the end: keeps the order of the latest intent. A merged intent is not a new write.
    if (!p.delete(id)) this.stats.pending++;
    p.set(id, desired);
    if (!this.workers.has(service)) {
      const w = this.work(service).finally(() => this.workers.delete(service));
      this.workers.set(service, w);
    }
  }

  private async work(service: string): Promise<void> {
    for (;;) {
      const p = this.pending.get(service);
      const next = p?.entries().next();
      if (!p || !next || next.done) {
        this.pending.delete(service);
        return;
      }
      const [id, desired] = next.value;
      p.delete(id);
      this.stats.pending = Math.max(0, this.stats.pending - 1);
      try {
        await this.write(service, id, desired);
      } catch (err) {
        if (err instanceof FencedError) {
          this.stats.fenced++;
          continue;
        }
        this.stats.failures++;
        const e = err instanceof KvWriteError ? err : new KvWriteError(`${service}.${id}`, { cause: err });
        this.log.error({ err: String(e.cause ?? e), key: `${service}.${id}` }, "catalog write given up");
        this.opts.onWriteFailed?.(e);
      }
    }
  }

  /** Waits while the gate says "hold"; throws FencedError on "drop". Returns the time held. */
  private async passGate(): Promise<number> {
    const gate = this.opts.gate;
    if (!gate) return 0;
    const start = Date.now();
    for (;;) {
      const g = this.closed && this.nc.isClosed() ? "drop" : gate();
      if (g === "write") return Date.now() - start;
      if (g === "drop") throw new FencedError();
      await sleep(20);
    }
  }

  private async retry<T>(what: string, key: string, fn: () => Promise<T>): Promise<T> {
    let deadline = Date.now() + this.opts.retryForMs;
    let delay = 50;
    for (let attempt = 1; ; attempt++) {
      // Before every attempt: a writer that lost its lease while retrying must not write.
      deadline += await this.passGate();
      try {
        return await fn();
      } catch (err) {
        if (isConflict(err) || err instanceof FencedError) throw err;
        this.opts.onError?.(err);
        if (Date.now() + delay > deadline || this.nc.isClosed()) throw new KvWriteError(key, { cause: err });
        this.stats.retries++;
        const log = attempt === 1 || attempt % 10 === 0 ? this.log.warn.bind(this.log) : this.log.debug.bind(this.log);
        log({ err: String(err), key, attempt, what }, "catalog write failed, retrying");
        await sleep(delay);
        // A short cap: a leaderless KV (4-8 s after a stream leader dies) is back at an unknown moment.
        delay = Math.min(delay * 2, 250);
      }
    }
  }

  private async write(service: string, id: string, desired: Desired): Promise<void> {
    const key = catalogKey(service, id);
    let revision = 0;
    let recordJson = "";
    for (let conflicts = 0; ; conflicts++) {
      const expected = this.keyRev.get(key) ?? 0;
      try {
        if (desired) {
          const encoded = encodeWithJson(CatalogInstance, desired, "catalog record");
          const data = encoded.bytes;
          recordJson = encoded.json;
          // The expectation is read at each attempt: a bucket recreated meanwhile (StoreGuard) has none.
          revision = await this.retry("put", key, () => {
            const rev = this.keyRev.get(key) ?? 0;
            return rev > 0 ? this.kv.update(key, data, rev) : this.kv.create(key, data);
          });
        } else {
          if (!this.memory.get(service, id)) return; // nothing stored: nothing to delete
          await this.retry("delete", key, () => {
            const rev = this.keyRev.get(key) ?? 0;
            return this.kv.delete(key, rev > 0 ? { previousSeq: rev } : {});
          });
          const entry = await this.retry("get", key, () => this.kv.get(key));
          revision = entry?.revision ?? 0;
        }
        break;
      } catch (err) {
        if (!isConflict(err) || conflicts >= 5) throw err;
        await this.passGate();
        // Someone else wrote this key (a second registry?): never overwrite blindly. Learn the
        // current revision, log loudly, and apply our decision on top of it.
        this.stats.conflicts++;
        const current = await this.retry("get", key, () => this.kv.get(key));
        this.keyRev.set(key, current?.revision ?? 0);
        this.log.warn({ key, expected, found: current?.revision ?? 0 }, "catalog write conflict: another writer changed this key");
      }
    }
    if (revision <= 0) throw new KvWriteError(key);
    this.keyRev.set(key, revision);
    this.stats.writes++;
    const prevRevision = this.memory.apply(service, id, revision, desired);
    const delta: CatalogDelta = desired
      ? { v: PROTOCOL_VERSION, kind: "delta", op: "put", service, instanceId: id, revision, prevRevision, instance: desired }
      : { v: PROTOCOL_VERSION, kind: "delta", op: "delete", service, instanceId: id, revision, prevRevision };
    try {
      const bytes = desired ? putDeltaBytes(service, id, revision, prevRevision, recordJson) : encode(CatalogDelta, delta, "catalog delta");
      this.nc.publish(catalogSubject(service), bytes);
    } catch (err) {
      // Subscribers detect the gap through prevRevision and fetch a snapshot.
      this.log.warn({ err: String(err), service, revision }, "delta publish failed");
    }
    this.opts.onWritten?.(delta);
  }

  /** True when nothing is queued or being written. */
  get idle(): boolean {
    return this.workers.size === 0;
  }

  /** Waits for queued writes to finish (bounded); new writes are refused from now on if `close`. */
  async flush(timeoutMs: number, close = false): Promise<boolean> {
    if (close) this.closed = true;
    const deadline = Date.now() + timeoutMs;
    while (this.workers.size > 0) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      let t: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(this.workers.values()), new Promise((r) => (t = setTimeout(r, left)))]);
      clearTimeout(t);
    }
    return true;
  }
}
