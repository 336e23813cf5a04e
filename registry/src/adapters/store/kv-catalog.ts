import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import type { KV, KvWatchEntry } from "@nats-io/kv";
import { Empty, type NatsConnection } from "@nats-io/transport-node";
import {
  CATALOG_BUCKET,
  CatalogDelta,
  CatalogInstance,
  LIMITS,
  PROTOCOL_VERSION,
  catalogKey,
  catalogKeyPrefix,
  catalogInstanceJson,
  catalogSubject,
  checkEncodedSize,
  decode,
  encode,
  parseCatalogKey,
} from "roster-schemas";
import { openBucket, type Replicas } from "roster-runtime";
import type { Logger } from "pino";
import { setTimeout as sleep } from "node:timers/promises";
import { KvWriteError } from "../../errors.js";
import { Interner } from "../../core/intern.js";
import type { CatalogMemory } from "./catalog-memory.js";
import { StreamBehindError, StreamWriter, type SentWrite } from "./stream-writer.js";

export interface KvCatalogOptions {
  replicas: Replicas;
  /** Longest time one write is retried on transient errors. */
  retryForMs: number;
  logger: Logger;
  /** Called when a write is given up, so the app can reconcile later. */
  onWriteFailed?: (err: KvWriteError) => void;
  /**
   * Called after each successful write (for counters and tests); `decidedAt` (performance.now) is
   * when the oldest decision the write carries was made (the publish-lag histogram).
   */
  onWritten?: (delta: CatalogDelta, decidedAt: number) => void;
  /**
   * Asked before every write attempt (registry replicas: the writer lease): "write", "hold"
   * (wait, keep the queue: the lease is uncertain) or "drop" (not the writer: discard the write).
   */
  gate?: () => WriteGate;
  /** Called with every failed write attempt (the store guard looks for "the bucket is gone"). */
  onError?: (err: unknown) => void;
  /**
   * Deltas were published for writes that cannot get the revisions they announced (another
   * writer's message in the way, a store behind us, writes given up): the app takes a new epoch so
   * every mirror resyncs from a snapshot.
   */
  onHistoryChanged?: () => void;
  /** The connection's inbox prefix when the account restricts inboxes (the write acks come there). */
  inboxPrefix?: string;
  /** A write with no ack after this long is checked and replayed (default 5,000 ms). */
  ackTimeoutMs?: number;
  /** Writes in flight (sent, not acked) at most (default 1,024). */
  maxInFlight?: number;
  /**
   * The connection the catalog writes are sent on and their acks come back on (default: the one the
   * catalog was opened on, which also carries the deltas). A connection of their own keeps deltas
   * from waiting behind writes nats-server is slow to take, and acks from waiting behind what the
   * main connection reads (a storm of registrations): docs/architecture.md, "The delta leaves with
   * the write".
   */
  writeConnection?: NatsConnection;
  /** Shares the repeated values of records read back from KV (core/intern.ts); pass the state machine's. */
  interner?: Interner;
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
  /** Writes sent again with their announced revision after the stream refused or did not ack them. */
  replayed: number;
  /** Most writes in flight (sent, not acked) at once so far. */
  peakInFlight: number;
  /** Writes in flight now (sent, not acked or settled). */
  readonly inFlight: number;
}

type Desired = CatalogInstance | null;

/**
 * A write waiting or in flight: the value, and when the oldest decision it carries was made
 * (performance.now; a coalesced decision keeps the older time). Kept here rather than in a map of
 * `<service>.<id>` strings beside it: building and hashing that key twice per write cost ~2 µs,
 * a tenth of a write in a registration storm.
 */
interface Wanted {
  desired: Desired;
  decidedAt: number;
}

/** What a write in flight was for: its delta (already published), when it was decided, whether it is settled. */
interface Intent {
  readonly delta: CatalogDelta;
  readonly decidedAt: number;
  settled: boolean;
}

const isWrongLastSequence = (err: unknown) => err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamWrongLastSequence;

/** A put delta's JSON up to its record: numbers and the record's own validated names. */
function putDeltaHead(delta: CatalogDelta & { op: "put" }): string {
  // Names need no escaping (NAME_PATTERN; see catalogInstanceJson).
  return (
    `{"v":${delta.v},"kind":"delta","op":"put","service":"${delta.service}","instanceId":"${delta.instanceId}",` +
    `"revision":${delta.revision},"prevRevision":${delta.prevRevision},"instance":`
  );
}

/** Whether a put delta can be the head + the record + "}" (within the limit, ordinary revisions); else the schema encodes it. */
function splices(delta: CatalogDelta, headBytes: number, recordBytes: number): boolean {
  return headBytes + recordBytes + 1 <= LIMITS.maxMessageBytes && delta.revision > 0 && delta.prevRevision >= 0;
}

/**
 * A delta's bytes. A put wraps the record bytes already validated and encoded for the KV write
 * (the same bytes, not a second parse and stringify of the instance); the fields around it are
 * numbers and the record's own validated names. Anything unusual goes through the schema.
 */
export function deltaBytes(delta: CatalogDelta, record: Uint8Array | null): Uint8Array {
  if (delta.op !== "put" || record === null) return encode(CatalogDelta, delta, "catalog delta");
  const head = putDeltaHead(delta);
  const headBytes = Buffer.byteLength(head);
  if (!splices(delta, headBytes, record.byteLength)) return encode(CatalogDelta, delta, "catalog delta");
  // One buffer from Node's pool, the head written straight into it (no intermediate encode).
  const out = Buffer.allocUnsafe(headBytes + record.byteLength + 1);
  out.write(head, 0, "utf8");
  out.set(record, headBytes);
  out[out.byteLength - 1] = 0x7d; // "}"
  return out;
}

/**
 * A put's KV record bytes and its delta's bytes in ONE buffer: the delta is the head, the record,
 * then "}", and the record written to KV is the slice in the middle. One encoding of the record
 * (`catalogInstanceJson`: JSON.stringify's value at about half its cost) and one UTF-8 encoding of
 * the whole delta, from one string: the head is ASCII (names and numbers), so its byte length is
 * its length and the record starts right after it. (Measuring the head and the record apart
 * flattened each into a string of its own: ~0.4 µs and ~600 bytes more per write.) The delta is
 * `deltaBytes(delta, record)`. `delta` is null when it cannot be spliced (over the message limit,
 * an odd revision): the caller builds it with `deltaBytes` (the schema) where a failure costs the
 * delta, not the write.
 */
export function putBytes(delta: CatalogDelta & { op: "put" }): { record: Uint8Array; delta: Uint8Array | null } {
  // Built by the core from validated agent messages (catalog-properties.test.ts checks them against the schema).
  const head = putDeltaHead(delta);
  const out = Buffer.from(head + catalogInstanceJson(delta.instance) + "}", "utf8");
  const recordBytes = out.byteLength - head.length - 1;
  checkEncodedSize(recordBytes, "catalog record");
  const record = out.subarray(head.length, head.length + recordBytes);
  return { record, delta: splices(delta, head.length, recordBytes) ? out : null };
}

/**
 * The catalog in JetStream KV. Writes are ordered per service (one worker per service, different
 * services interleaved) and coalesced per key: while a key waits, only its latest desired value is
 * kept. Each write is pipelined (stream-writer.ts): sent with the stream sequence it must get,
 * which is its revision, then in the same turn its delta and the memory change; the ack counts it.
 */
export class KvCatalog {
  private readonly kv: KV;
  private readonly nc: NatsConnection;
  private readonly memory: CatalogMemory;
  private readonly interner: Interner;
  private readonly opts: KvCatalogOptions;
  private readonly log: Logger;
  private readonly writer: StreamWriter<Intent>;
  /** `$KV.<bucket>.`: the subject of a key's writes. */
  private readonly subjectPrefix: string;
  /**
   * Per service, its delta subject and the start of its keys' write subjects, each name checked
   * once: built per write they were three regular-expression tests and three strings. As many
   * entries as services ever written (memory keeps as many).
   */
  private readonly serviceSubjects = new Map<string, { delta: string; write: string }>();
  /** Writes sent and not settled yet (acked, or rewritten / given up when their revision cannot come true). */
  private unsettled = 0;
  private unconfirmed = new Set<string>();
  private readonly forceDelete = new Set<string>();
  private recovering: Promise<void> | null = null;
  private syncing: Promise<boolean> | null = null;
  private readonly pending = new Map<string, Map<string, Wanted>>();
  private readonly workers = new Map<string, Promise<void>>();
  private closed = false;
  readonly stats: KvCatalogStats = ((store) => ({
    writes: 0, conflicts: 0, retries: 0, failures: 0, corruptRecords: 0, pending: 0, fenced: 0, replayed: 0, peakInFlight: 0,
    get inFlight() {
      return store.unsettled;
    },
  }))(this);

  private constructor(nc: NatsConnection, kv: KV, stream: { name: string; subject: string }, memory: CatalogMemory, opts: KvCatalogOptions) {
    this.nc = nc;
    this.kv = kv;
    this.memory = memory;
    this.opts = opts;
    this.log = opts.logger;
    this.interner = opts.interner ?? new Interner();
    this.subjectPrefix = stream.subject.slice(0, -1); // "$KV.catalog.>" → "$KV.catalog."
    this.writer = new StreamWriter(opts.writeConnection ?? nc, {
      stream: stream.name,
      ackTimeoutMs: opts.ackTimeoutMs ?? 5000,
      maxInFlight: opts.maxInFlight ?? 1024,
      ...(opts.inboxPrefix ? { inboxPrefix: opts.inboxPrefix } : {}),
      // At once, not at the next write: the deltas already out must come true (or be retracted) now.
      onFailure: () => void this.recovery(),
      onAck: (w) => this.written(w),
    });
  }

  /** Settles the failed writes (coalesced: one recovery at a time). */
  private recovery(): Promise<void> {
    this.recovering ??= this.recover().finally(() => (this.recovering = null));
    return this.recovering;
  }

  /** Creates or binds the bucket (history 1), retrying while JetStream is unavailable. */
  static async open(nc: NatsConnection, memory: CatalogMemory, opts: KvCatalogOptions, signal?: AbortSignal): Promise<KvCatalog> {
    const kv = await openBucket(nc, CATALOG_BUCKET, { replicas: opts.replicas, logger: opts.logger, ...(signal ? { signal } : {}) });
    const info = (await kv.status()).streamInfo;
    const subject = info.config.subjects?.[0];
    if (!subject?.endsWith(".>")) throw new Error(`catalog stream ${info.config.name} has no "<prefix>.>" subject`);
    return new KvCatalog(nc, kv, { name: info.config.name, subject }, memory, opts);
  }

  /** The bucket was recreated (StoreGuard): its sequence is read again before the next write. */
  storeRecreated(): void {
    this.writer.reset();
    this.writer.checked = false;
  }

  /**
   * The highest revision known stored: the stream's acks (or last sequence) once writing, memory's
   * before. Memory may be ahead by the writes in flight, which the store guard must not take for
   * a store behind us.
   */
  get confirmedRevision(): number {
    return this.writer.synced || this.writer.confirmed > 0 ? Math.min(this.memory.revision, this.writer.confirmed) : this.memory.revision;
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
    const record = this.interner.record(r.value);
    put(record);
    opts.records?.push(record);
  }

  /**
   * Queues a put (record) or delete (null); returns at once. `force`: write a delete even though
   * memory holds no record (reconciling a delete that was given up).
   */
  enqueue(service: string, id: string, desired: Desired, force = false, decidedAt = performance.now()): void {
    if (this.closed) return;
    if (force && desired === null) this.forceDelete.add(catalogKey(service, id));
    if (!this.workers.has(service) && !this.pending.get(service)?.size && this.sendableNow()) {
      // Nothing of this service waiting and the writer free: sent in this turn. Through the worker it
      // went out only after every other message of the same socket read had been handled (a
      // continuation runs once the NATS client has dispatched the whole read; with 2,000 hosts
      // beating, agent → write seen p50 2.14 → 1.94 ms in one loaded run each: docs/architecture.md).
      this.sendOrSkip(service, id, { desired, decidedAt });
      return;
    }
    let p = this.pending.get(service);
    if (!p) {
      p = new Map();
      this.pending.set(service, p);
    }
    // Re-insert at the end: keeps the order of the latest intent. A merged intent is not a new write.
    const merged = p.get(id);
    if (merged) p.delete(id);
    else this.stats.pending++;
    p.set(id, { desired, decidedAt: merged ? Math.min(merged.decidedAt, decidedAt) : decidedAt });
    if (!this.workers.has(service)) {
      const w = this.work(service).finally(() => this.workers.delete(service));
      this.workers.set(service, w);
    }
  }

  private async work(service: string): Promise<void> {
    for (;;) {
      const p = this.pending.get(service);
      if (!p || p.size === 0) {
        this.pending.delete(service);
        return;
      }
      try {
        await this.writable();
      } catch (err) {
        if (!(err instanceof FencedError)) throw err;
        // Not the writer: the oldest intent is dropped (the new writer rebuilds from KV and the agents).
        const first = p.keys().next();
        if (!first.done && p.delete(first.value)) this.stats.pending = Math.max(0, this.stats.pending - 1);
        this.stats.fenced++;
        continue;
      }
      // Then as many of this service's writes as the window takes, in this one turn: nats.js writes
      // what a turn published in one socket write. Checked at each: an ack that failed while this
      // continuation was queued stops every send until the failure is settled.
      // One iterator for the batch: a fresh `entries().next()` per write walks every deleted slot
      // before the first live one (V8 compacts a Map only on growth), quadratic in a storm.
      for (const [instanceId, wanted] of p) {
        if (!this.writer.writable) break;
        p.delete(instanceId);
        this.stats.pending = Math.max(0, this.stats.pending - 1);
        this.sendOrSkip(service, instanceId, wanted);
      }
    }
  }

  /** A write may be sent at once: the gate says "write", nothing failed or being settled, room in the window. */
  private sendableNow(): boolean {
    return this.gate() === "write" && this.recovering === null && !this.writer.failed && this.writer.writable;
  }

  /** Sends `wanted`, unless it deletes what was never stored (nothing to delete, unless a delete was given up: memory lost it, the store may not have). */
  private sendOrSkip(service: string, id: string, wanted: Wanted): void {
    if (wanted.desired === null && !this.memory.get(service, id) && !this.forceDelete.delete(catalogKey(service, id))) return;
    this.send(service, id, wanted);
  }

  /** What the writer lease says now (a closed store on a closed connection writes nothing). */
  private gate(): WriteGate {
    return this.closed && this.nc.isClosed() ? "drop" : (this.opts.gate?.() ?? "write");
  }

  /**
   * Resolves when a write may be sent now: the gate says "write" (waits on "hold", throws
   * FencedError on "drop"), no failed tail is being settled, the stream's sequence is known (read
   * it, retrying), and the window has room.
   */
  private async writable(): Promise<void> {
    let delay = 50;
    for (;;) {
      if (this.sendableNow()) return; // the same test as enqueue's send-at-once
      const g = this.gate();
      if (g === "drop") {
        this.writer.reset(); // a writer again later must read the sequence anew: someone else wrote meanwhile
        throw new FencedError();
      }
      if (g === "hold") {
        this.writer.reset();
        await sleep(20);
        continue;
      }
      if (this.recovering) {
        await this.recovering;
        continue;
      }
      if (this.writer.failed) {
        await this.recovery();
        continue;
      }
      // Here the gate says write and nothing failed: the writer itself is not ready.
      if (!this.writer.synced) {
        if (this.writer.inFlightCount > 0) await this.writer.drained();
        this.syncing ??= this.sync().finally(() => (this.syncing = null));
        if (!(await this.syncing)) {
          await sleep(delay);
          delay = Math.min(delay * 2, 250);
        } else delay = 50;
        continue;
      }
      if (this.writer.inFlightCount > 0) await this.writer.room();
      else await sleep(20); // not connected: wait for the reconnect
    }
  }

  /** Reads the stream's sequence (one at a time for all the service workers); false when it could not. */
  private async sync(): Promise<boolean> {
    try {
      const known = this.writer.confirmed;
      const last = await this.writer.sync();
      if (known > 0 && last > known && this.writer.synced) {
        // We wrote before and someone else wrote since (a second registry?): never silent.
        this.stats.conflicts++;
        this.log.warn({ known, found: last }, "catalog stream written by another writer since our last write: writing on top");
      }
      return true;
    } catch (err) {
      this.opts.onError?.(err);
      this.log.debug({ err: String(err) }, "reading the catalog stream's sequence failed, retrying");
      return false;
    }
  }

  /**
   * Sends one write and, in the same turn, its delta (revision = the sequence the write asserts)
   * and the memory change (which wakes HTTP waiters, SSE streams and xDS). The ack counts it
   * written; a refusal is settled by `recover()`.
   */
  private send(service: string, id: string, { desired, decidedAt }: Wanted): void {
    const subjects = this.subjectsOf(service);
    const seq = this.writer.nextSeq; // the revision this write asserts (writable here: checked by every caller)
    const prevRevision = this.memory.serviceRevision(service).revision;
    const delta: CatalogDelta = desired
      ? { v: PROTOCOL_VERSION, kind: "delta", op: "put", service, instanceId: id, revision: seq, prevRevision, instance: desired }
      : { v: PROTOCOL_VERSION, kind: "delta", op: "delete", service, instanceId: id, revision: seq, prevRevision };
    const bytes = delta.op === "put" ? putBytes(delta) : null;
    // The id is a name the catalog took from validated input (an agent message, a key read back).
    const w = this.writer.send(subjects.write + id, bytes?.record ?? Empty, bytes ? "put" : "del", { delta, decidedAt, settled: false });
    this.unsettled++;
    if (this.writer.inFlightCount > this.stats.peakInFlight) this.stats.peakInFlight = this.writer.inFlightCount;
    try {
      this.nc.publish(subjects.delta, bytes?.delta ?? deltaBytes(delta, bytes?.record ?? null));
    } catch (err) {
      // Subscribers detect the gap through prevRevision and fetch a snapshot.
      this.log.warn({ err: String(err), service, revision: w.seq }, "delta publish failed");
    }
    this.memory.apply(service, id, w.seq, desired);
  }

  /** A write acked, or found stored after its ack was lost. */
  private written(w: SentWrite<Intent>): void {
    if (w.intent.settled) return;
    w.intent.settled = true;
    this.unsettled--;
    this.stats.writes++;
    this.opts.onWritten?.(w.intent.delta, w.intent.decidedAt);
  }

  private subjectsOf(service: string): { delta: string; write: string } {
    let s = this.serviceSubjects.get(service);
    if (!s) {
      s = { delta: catalogSubject(service), write: this.subjectPrefix + catalogKeyPrefix(service) };
      this.serviceSubjects.set(service, s);
    }
    return s;
  }

  /**
   * Settles the writes the stream refused or never acked. Those stored after all (a lost ack)
   * count as written; if the stream's last sequence is right before the first of the rest, they
   * are sent again with the same sequences, so every delta already published stays true. If
   * anything else is in the way (another writer's message, a store behind us) the announced
   * revisions cannot all come true: `onHistoryChanged` (the app takes a new epoch, so every mirror
   * resyncs), and the intents are written again as new writes. Retried for `retryForMs`, then given
   * up the same way (`onWriteFailed`: the app reconciles).
   */
  private async recover(): Promise<void> {
    await this.writer.drained();
    let tail = this.writer.takeFailed();
    const first = tail[0];
    if (!first) return;
    this.opts.onError?.(first.error);
    this.log.warn({ err: String(first.error), firstSeq: first.seq, writes: tail.length }, "catalog writes refused or unanswered: checking the stream, then replaying them");
    const deadline = Date.now() + this.opts.retryForMs;
    let delay = 50;
    for (let attempt = 1; ; attempt++) {
      const g = this.gate();
      if (g === "drop") return this.abandon(tail, "not the writer any more");
      try {
        if (g === "write") {
          const last = await this.writer.streamLastSeq();
          while (tail.length > 0 && tail[0]!.seq <= last) {
            const w = tail[0]!;
            if (!(await this.writer.isStored(w))) {
              this.stats.conflicts++; // another writer's message where ours was announced
              return this.historyChanged(tail, `sequence ${w.seq} holds another write`);
            }
            tail.shift();
            this.writer.confirm(w);
            this.written(w); // its ack was lost, not the write
          }
          if (tail.length === 0) {
            this.writer.reset();
            return;
          }
          // Behind the first refused write: a stream leader not caught up yet, or a store that lost data
          // (the store guard recreates it just past what we know stored); wait, then replay.
          if (tail[0]!.seq > last + 1) throw new StreamBehindError(`the catalog stream is at ${last}, behind write ${tail[0]!.seq}`);
          if (this.writer.checked && isWrongLastSequence(tail[0]!.error)) {
            // Refused although the stream ends right where it expected: the nats-server 2.9 quirk of a
            // stream purged to a later sequence (stream-writer.ts, `checked`), maybe by an earlier process.
            this.writer.checked = false;
            this.log.warn({ lastSeq: last }, "nats-server refuses this stream's expected last sequence (a purged stream): writing without it, checking each ack's sequence");
          }
          this.stats.replayed += tail.length;
          this.writer.resume(last);
          for (const w of tail) this.writer.resend(w);
          await this.writer.drained();
          tail = this.writer.takeFailed();
          if (tail.length === 0) {
            this.log.info({ lastSeq: last }, "catalog writes replayed with their announced revisions");
            return;
          }
          this.opts.onError?.(tail[0]!.error);
        }
      } catch (err) {
        this.opts.onError?.(err);
        this.log.debug({ err: String(err) }, "checking the catalog stream failed, retrying");
      }
      if (Date.now() + delay > deadline || this.nc.isClosed()) {
        this.stats.failures += tail.length;
        const e = new KvWriteError(`${tail.length} writes from ${tail[0]!.subject}`, { cause: tail[0]!.error });
        this.log.error({ code: e.code, err: String(tail[0]!.error), writes: tail.length }, "catalog writes given up");
        this.historyChanged(tail, "given up", false);
        this.opts.onWriteFailed?.(e);
        return;
      }
      this.stats.retries++;
      const log = attempt % 10 === 1 ? this.log.warn.bind(this.log) : this.log.debug.bind(this.log);
      log({ attempt, writes: tail.length }, "catalog writes not replayed yet, retrying");
      await sleep(delay);
      delay = Math.min(delay * 2, 250);
    }
  }

  /** Writes whose announced revisions cannot come true: a new epoch for every mirror, the intents written anew. */
  private historyChanged(tail: SentWrite<Intent>[], why: string, rewrite = true): void {
    this.log.error({ why, writes: tail.length, firstSeq: tail[0]?.seq }, "catalog history changed under the registry: every mirror resyncs");
    this.writer.reset();
    this.opts.onHistoryChanged?.();
    this.abandon(tail, why, rewrite);
  }

  private abandon(tail: SentWrite<Intent>[], why: string, rewrite = false): void {
    for (const { intent } of tail) {
      if (intent.settled) continue;
      intent.settled = true;
      this.unsettled--;
      const { service, instanceId: id } = intent.delta;
      if (rewrite) {
        // A newer intent for the key already waiting wins.
        if (!this.pending.get(service)?.has(id)) this.enqueue(service, id, intent.delta.op === "put" ? intent.delta.instance : null, false, intent.decidedAt);
      } else {
        this.unconfirmed.add(catalogKey(service, id));
      }
    }
    if (!rewrite && tail.length > 0) this.log.warn({ why, writes: tail.length }, "catalog writes dropped");
  }

  /** Keys whose last write was given up (memory shows it, the store may not): the app's reconcile rewrites them. */
  takeUnconfirmed(): Set<string> {
    const u = this.unconfirmed;
    this.unconfirmed = new Set();
    return u;
  }

  /** True when nothing is queued or being written. */
  get idle(): boolean {
    return this.workers.size === 0 && this.writer.inFlightCount === 0 && this.recovering === null && !this.writer.failed;
  }

  /** Waits for queued writes to finish (bounded); new writes are refused from now on if `close`. */
  async flush(timeoutMs: number, close = false): Promise<boolean> {
    if (close) this.closed = true;
    const deadline = Date.now() + timeoutMs;
    while (!this.idle) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      let t: NodeJS.Timeout | undefined;
      const recovery = this.recovering ?? (this.writer.failed ? this.recovery() : null);
      await Promise.race([Promise.all([...this.workers.values(), this.writer.drained(), recovery]), new Promise((r) => (t = setTimeout(r, left)))]);
      clearTimeout(t);
    }
    if (close) this.writer.close();
    return true;
  }
}
