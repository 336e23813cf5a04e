// Pipelined, sequenced writes to one JetStream stream (the catalog bucket's), with our own ack path.
//
// The registry is the stream's only writer (the writer lease), so it knows the sequence the
// stream will give its next message: each write is sent with `Nats-Expected-Last-Sequence: seq-1`
// and its revision is known when it is SENT. The caller publishes the delta right after the write,
// on the same connection (so nats-server has the write before anyone has the delta), without
// waiting for the ack; many writes are in flight at once, still in revision order. JetStream
// refuses a write whose expectation is wrong, so a revision announced this way is either the one
// the write gets, or the write is refused (and every write after it, as their expectations chain):
// the caller replays the refused tail with the same sequences (docs/architecture.md, "The delta
// leaves with the write").
//
// Acks come back on one wildcard inbox subscription (`<inbox>.<seq>`), not a request (and its
// timer) per write: at 20,000 writes/s the per-request machinery of the client library was most
// of the registry's CPU per write.
import { JetStreamApiError, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { createInbox, headers, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from "@nats-io/transport-node";

export type WriteOp = "put" | "del";

export interface StreamWriterOptions<I = unknown> {
  /** The stream (for the KV bucket `catalog`: `KV_catalog`). */
  stream: string;
  /** A sent write with no ack after this long counts as failed (then it is checked and replayed). */
  ackTimeoutMs: number;
  /** Writes in flight at most (sent, not acked); the caller waits for room beyond it. */
  maxInFlight: number;
  /** The connection's inbox prefix when the account restricts inboxes. */
  inboxPrefix?: string;
  /** A write failed (called once per failure; the caller settles `takeFailed()` once drained). */
  onFailure?: () => void;
  /**
   * A write was acked. One callback for every write, rather than a closure per write: a storm
   * sends 100,000 of them.
   */
  onAck?: (w: SentWrite<I>) => void;
}

/** One write on its way: its predicted sequence and what it carried (to replay or verify it). */
export interface SentWrite<I = unknown> {
  readonly seq: number;
  readonly subject: string;
  readonly data: Uint8Array;
  readonly op: WriteOp;
  sentAt: number;
  /** Why the stream did not take it (null while in flight or once acked). */
  error: Error | null;
  /** What the caller wrote it for (its bookkeeping: handed back by `onAck` and with failed writes). */
  readonly intent: I;
}

/** An ack that never came. */
export class AckTimeoutError extends Error {
  override name = "AckTimeoutError";
}

/** The stream answers a last sequence below what we know it stored. */
export class StreamBehindError extends Error {
  override name = "StreamBehindError";
}

/** No stream listens on the subject (nats-server answered 503: JetStream off or the stream gone). */
export class JetStreamNotEnabled extends Error {
  override name = "JetStreamNotEnabled";
}

const dec = new TextDecoder();
const NO_HEADERS = new Uint8Array(0);

/**
 * The NATS header block of one write, as nats.js's MsgHdrs would encode it (`NATS/1.0`, then
 * `key: value` lines in the order set, then an empty line; nothing at all when there is no header).
 * Latin-1 is exact: every byte here is ASCII.
 */
export function writeHeaderBytes(expectedLastSeq: number | null, del: boolean): Uint8Array {
  if (expectedLastSeq === null) return del ? Buffer.from("NATS/1.0\r\nKV-Operation: DEL\r\n\r\n", "latin1") : NO_HEADERS;
  return Buffer.from(`NATS/1.0\r\nNats-Expected-Last-Sequence: ${expectedLastSeq}${del ? "\r\nKV-Operation: DEL" : ""}\r\n\r\n`, "latin1");
}

const ACK_START = Buffer.from('{"stream":"', "latin1");
const ACK_SEQ = Buffer.from('"seq":', "latin1");

/**
 * The sequence of a plain JetStream publish ack, `{"stream":"<name>", "seq":<n>}` (nats-server
 * 2.9 writes it so, with the space; a domain may come between), read off its bytes; -1 for
 * anything else (an error, which nats-server writes first; a duplicate flag, written after the
 * sequence; 503 without a body): those are JSON-parsed. One ack comes per catalog write, and
 * decoding and parsing each was ~1 µs of a storm's ~30 per instance.
 */
export function plainAckSeq(data: Uint8Array): number {
  const end = data.byteLength - 1;
  if (end < ACK_START.byteLength + ACK_SEQ.byteLength + 1 || data[end] !== 0x7d) return -1;
  let i = end - 1;
  let seq = 0;
  let scale = 1;
  while (i >= 0 && data[i]! >= 0x30 && data[i]! <= 0x39) {
    seq += (data[i]! - 0x30) * scale;
    scale *= 10;
    i--;
  }
  if (i === end - 1 || end - 1 - i > 15) return -1; // no digits, or more than a safe integer's
  const seqAt = i + 1 - ACK_SEQ.byteLength;
  for (let k = 0; k < ACK_SEQ.byteLength; k++) if (data[seqAt + k] !== ACK_SEQ[k]) return -1;
  const comma = data[seqAt - 1] === 0x20 ? seqAt - 2 : seqAt - 1;
  if (data[comma] !== 0x2c) return -1;
  for (let k = 0; k < ACK_START.byteLength; k++) if (data[k] !== ACK_START[k]) return -1;
  return seq;
}

export class StreamWriter<I = unknown> {
  private readonly nc: NatsConnection;
  private readonly opts: StreamWriterOptions<I>;
  private readonly inbox: string;
  private readonly sub: Subscription;
  /** The ack subscription is known to the server (flushed once before the first write). */
  private ackReady = false;
  private readonly timer: NodeJS.Timeout;
  private jsm: JetStreamManager | null = null;
  /** The header bytes of the write being published (see `hdrs`). */
  private hdrBytes: Uint8Array = NO_HEADERS;
  /**
   * One headers object for every write, whose encoding is ours. nats.js encodes a publish's headers
   * in the publish call itself (`headers.encode()`, synchronously, nothing else read), so handing it
   * the bytes set just before each publish is exact. A MsgHdrs built per write (a Map, key checks,
   * a string join and a TextEncoder buffer) cost ~1.3 µs of the ~30 µs a storm spends per instance;
   * these bytes ~0.3 µs. Tested against nats-server (kv-catalog.test.ts: a write at a wrong
   * expectation is refused as such).
   */
  private readonly hdrs: MsgHdrs = Object.assign(headers(), { encode: () => this.hdrBytes });
  /** Writes sent and not yet acked or failed, in sequence order (a Map keeps insertion order). */
  private readonly inFlight = new Map<number, SentWrite<I>>();
  /** Writes the stream refused or never acked, in sequence order: the caller replays or gives them up. */
  private failedTail: SentWrite<I>[] = [];
  private roomWaiters: Array<() => void> = [];
  private drainWaiters: Array<() => void> = [];
  /** The sequence of the last write sent (the stream's last sequence once all are acked); null: unknown. */
  private last: number | null = null;
  /** The highest sequence known stored (acked, or the stream's last at a sync). */
  confirmed = 0;
  private connected: boolean;
  private closed = false;
  /**
   * False: writes go without `Nats-Expected-Last-Sequence`. nats-server 2.9 checks that header
   * against a count that a purge to a later sequence (how the store guard moves a recreated bucket
   * past our revisions) does not move, so it refuses every write into such a stream until the
   * server restarts. Unchecked, a write still must be acked at the sequence it announced, or it is
   * settled like a refused one (a foreign message in its place changes the history).
   */
  checked = true;

  constructor(nc: NatsConnection, opts: StreamWriterOptions<I>) {
    this.nc = nc;
    this.opts = opts;
    this.connected = !nc.isClosed();
    this.inbox = createInbox(opts.inboxPrefix);
    this.sub = nc.subscribe(`${this.inbox}.*`, { callback: (err, msg) => {
      if (!err) this.onAck(msg);
    } });
    this.timer = setInterval(() => this.sweep(), Math.max(50, Math.floor(opts.ackTimeoutMs / 4)));
    this.timer.unref();
    void this.watchStatus();
  }

  private async watchStatus(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === "disconnect") this.connected = false;
      else if (s.type === "reconnect") this.connected = true;
    }
  }

  /** True when a write can be sent now: the sequence is known, nothing failed, there is room, the connection is up. */
  get writable(): boolean {
    return this.last !== null && this.failedTail.length === 0 && this.inFlight.size < this.opts.maxInFlight && this.connected && !this.closed;
  }

  /** The sequence the next `send` will assert (its revision); only while `writable`. */
  get nextSeq(): number {
    return this.last! + 1;
  }

  /** The sequence is known (a sync was made since the last failure or reset). */
  get synced(): boolean {
    return this.last !== null;
  }

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  /** Something failed: the caller must settle `takeFailed()` (replay or give up) before writing on. */
  get failed(): boolean {
    return this.failedTail.length > 0;
  }

  /** Forget the sequence (another writer may have written, the stream was recreated): the next write syncs first. */
  reset(): void {
    this.last = null;
  }

  /**
   * Reads the stream's last sequence and writes on from it; only while nothing is in flight.
   * Throws when the stream answers with less than we know it stored: a stream leader that has not
   * caught up yet (seen right after a leader's kill -9), or a store that lost data (the store guard
   * recreates it past `confirmed`). Writing on from there would announce revisions already used.
   */
  async sync(): Promise<number> {
    if (!this.ackReady) {
      await this.nc.flush(); // replies to an inbox the server does not know yet would be lost
      this.ackReady = true;
    }
    const last = await this.streamLastSeq();
    if (last < this.confirmed) throw new StreamBehindError(`the catalog stream answers sequence ${last}, below ${this.confirmed} already stored`);
    if (this.inFlight.size === 0 && this.failedTail.length === 0) {
      this.last = last;
      this.confirmed = last;
    }
    return last;
  }

  /** The stream's last sequence now. */
  async streamLastSeq(): Promise<number> {
    return (await (await this.manager()).streams.info(this.opts.stream)).state.last_seq;
  }

  /** True when the message stored at `w.seq` is `w` (its ack was lost, the write was not). */
  async isStored(w: SentWrite<I>): Promise<boolean> {
    const m = await (await this.manager()).streams.getMessage(this.opts.stream, { seq: w.seq });
    if (!m || m.subject !== w.subject) return false;
    const op = m.header?.get("KV-Operation");
    if (w.op === "del") return op === "DEL";
    return !op && Buffer.compare(Buffer.from(m.data), Buffer.from(w.data)) === 0;
  }

  /**
   * Sends one write at the next sequence; call only when `writable`. The returned write's `seq`
   * is its revision if the stream takes it.
   */
  send(subject: string, data: Uint8Array, op: WriteOp, intent: I): SentWrite<I> {
    if (!this.writable) throw new Error("stream writer: send while not writable");
    const seq = this.last! + 1;
    const w: SentWrite<I> = { seq, subject, data, op, sentAt: Date.now(), error: null, intent };
    this.transmit(w);
    return w;
  }

  /**
   * Sends a failed write again with the SAME sequence (a replay after the stream's last sequence
   * was found to be `w.seq - 1`): the revision announced for it stays true.
   */
  resend(w: SentWrite<I>): void {
    if (this.last !== w.seq - 1) throw new Error(`replay out of order: last ${this.last}, write ${w.seq}`);
    w.error = null;
    w.sentAt = Date.now();
    this.transmit(w);
  }

  private transmit(w: SentWrite<I>): void {
    this.hdrBytes = writeHeaderBytes(this.checked ? w.seq - 1 : null, w.op === "del");
    this.last = w.seq;
    this.inFlight.set(w.seq, w);
    try {
      this.nc.publish(w.subject, w.data, { reply: `${this.inbox}.${w.seq}`, headers: this.hdrs });
    } finally {
      this.hdrBytes = NO_HEADERS; // never kept past its publish
    }
  }

  /** A failed write found stored after all (its ack was lost). */
  confirm(w: SentWrite<I>): void {
    if (w.seq > this.confirmed) this.confirmed = w.seq;
  }

  /** Sets the sequence after a replay decision (`seq`: the stream's last sequence). */
  resume(seq: number): void {
    this.last = seq;
  }

  /** The failed writes, in sequence order, handed to the caller (and cleared); only once drained. */
  takeFailed(): SentWrite<I>[] {
    const t = this.failedTail.sort((a, b) => a.seq - b.seq);
    this.failedTail = [];
    return t;
  }

  /** Resolves when nothing is in flight. */
  drained(): Promise<void> {
    if (this.inFlight.size === 0) return Promise.resolve();
    return new Promise((r) => this.drainWaiters.push(r));
  }

  /**
   * A quarter of the window is free. Waiters wake at that, not at every ack: what they send then goes
   * out in one turn (one socket write) instead of one write per ack.
   */
  private get roomy(): boolean {
    return this.inFlight.size <= this.opts.maxInFlight - Math.max(1, this.opts.maxInFlight >> 2);
  }

  /** Resolves when a quarter of the window is free (or it is already). */
  room(): Promise<void> {
    if (this.roomy) return Promise.resolve();
    return new Promise((r) => this.roomWaiters.push(r));
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.sub.unsubscribe();
    for (const w of this.inFlight.values()) this.fail(w, new Error("writer closed"));
  }

  private async manager(): Promise<JetStreamManager> {
    this.jsm ??= await jetstreamManager(this.nc, { checkAPI: false });
    return this.jsm;
  }

  private onAck(msg: Msg): void {
    if (this.checked) {
      // A checked write is stored at the sequence it asserted or not at all, so a plain ack's
      // sequence names its write (no subject to decode). Unchecked writes take the path below,
      // which compares the two.
      const plain = plainAckSeq(msg.data);
      const w = plain > 0 ? this.inFlight.get(plain) : undefined;
      if (w) return this.acked(w);
    }
    const seq = Number(msg.subject.slice(this.inbox.length + 1));
    const w = this.inFlight.get(seq);
    if (!w) return; // a late ack of a write already counted as failed (timeout): its replay is checked against the stream
    if (msg.headers?.code === 503) return this.fail(w, new JetStreamNotEnabled("jetstream is not enabled (no responders)"));
    let ack: { seq?: number; error?: { code: number; err_code: number; description: string } };
    try {
      ack = JSON.parse(dec.decode(msg.data)) as typeof ack;
    } catch {
      return this.fail(w, new Error(`unreadable JetStream ack: ${dec.decode(msg.data).slice(0, 200)}`));
    }
    if (ack.error) return this.fail(w, new JetStreamApiError(ack.error));
    if (ack.seq !== seq) return this.fail(w, new Error(`JetStream stored write ${seq} at sequence ${ack.seq}`));
    this.acked(w);
  }

  private acked(w: SentWrite<I>): void {
    this.inFlight.delete(w.seq);
    if (w.seq > this.confirmed) this.confirmed = w.seq;
    try {
      this.opts.onAck?.(w);
    } finally {
      this.settled();
    }
  }

  private fail(w: SentWrite<I>, err: Error): void {
    if (!this.inFlight.delete(w.seq)) return;
    w.error = err;
    this.failedTail.push(w);
    this.last = null; // nothing is sent until the caller has looked at the stream
    this.settled();
    this.opts.onFailure?.();
  }

  private settled(): void {
    if (this.roomWaiters.length > 0 && this.roomy) {
      const ws = this.roomWaiters;
      this.roomWaiters = [];
      for (const r of ws) r();
    }
    if (this.inFlight.size === 0 && this.drainWaiters.length > 0) {
      const ws = this.drainWaiters;
      this.drainWaiters = [];
      for (const r of ws) r();
    }
  }

  private sweep(): void {
    if (this.inFlight.size === 0) return;
    const limit = Date.now() - this.opts.ackTimeoutMs;
    for (const w of [...this.inFlight.values()]) {
      if (w.sentAt > limit) break; // in send order: the rest are younger
      this.fail(w, new AckTimeoutError(`no JetStream ack for write ${w.seq} in ${this.opts.ackTimeoutMs} ms`));
    }
  }
}
