/**
 * The writer lease of registry replicas: a pure state machine (no I/O, no clock: `now` is a
 * monotonic time in ms that comes in). The adapter (adapters/store/lease-kv.ts) stores the lease in one
 * JetStream KV key and carries out the compare-and-set writes this machine asks for.
 *
 * Roles:
 *   - standby    reads only. Takes over when the key is free (absent, deleted, released), or
 *                when it has seen no change of the key's revision for a full ttl BY ITS OWN CLOCK
 *                since it last saw the revision change. The takeover is a CAS on that revision:
 *                of several standbys, exactly one wins.
 *   - leader     the only writer. Renews with a CAS on its own last revision every renewEvery.
 *                May write only while `now - sentAt(last successful renew) < ttl - margin`.
 *   - suspended  a leader whose own deadline passed without a successful renew (the lease bucket
 *                unwritable, its connection down, its process paused): it must not write, but
 *                has no evidence of having lost the lease, so it keeps its state and writes held
 *                back, and resumes if its next renew (a CAS on its own revision) succeeds: then
 *                nobody else wrote the key in between, so nobody else was leader.
 *
 * Why the writer stops before any standby can start (clocks may have any offset; only their
 * rates are assumed equal within `margin / ttl`): the leader's renew is committed at some time W
 * after it was sent (S <= W). A standby sees that revision at V >= W and may take over only at
 * V + ttl or later. The leader stops at S + ttl - margin <= V + ttl - margin: a margin before.
 * The margin also absorbs an event-loop stall between the leader's last check and its write.
 *
 * Across a NATS stream leader election of the lease bucket (writes impossible for seconds, reads
 * still served by followers) the holder cannot renew, yet the standby sees only silence. So a
 * waiting standby probes the bucket every renewEvery (a CAS with an impossible revision, which a
 * live stream leader refuses and nobody can win). A probe or takeover without an answer marks
 * the bucket unwritable: the standby then only probes (every retryEvery) until one is answered,
 * and counts a new full ttl of silence from that answer. The holder thus always gets a full ttl
 * of WRITABLE bucket (as the standby saw it) before a takeover, whether or not the standby's ttl
 * ran out during the election. A probe answered while the bucket stayed writable changes
 * nothing, so a dead holder is still replaced after ttl (plus at most one probe in flight).
 */

export type LeaseRole = "leader" | "suspended" | "standby";

/** The value stored in the lease key. */
export interface LeaseValue {
  registryId: string;
  /** The holder's term: each takeover writes the highest epoch seen + 1. */
  epoch: number;
  ttlMs: number;
}

export interface LeaseOptions {
  registryId: string;
  ttlMs: number;
  /** The leader stops writing this long before its ttl (measured from its renew's send time) ends. */
  marginMs: number;
  /** The leader renews this often. */
  renewEveryMs: number;
  /** A leader whose renew failed without an answer tries again after this long. */
  retryEveryMs: number;
}

/**
 * A CAS the adapter must carry out: `expectRevision` 0 means "create" (the key does not exist).
 * A "probe" is a CAS with an impossible revision: refused (a conflict) when the bucket is writable.
 */
export interface LeaseAction {
  type: "acquire" | "renew" | "probe";
  expectRevision: number;
  value: LeaseValue;
}

export type LeaseEvent =
  | { type: "elected"; epoch: number }
  | { type: "resumed"; epoch: number }
  | { type: "suspended"; epoch: number; sinceRenewMs: number }
  | { type: "lost"; epoch: number; reason: "superseded" };

export interface LeaseCounters {
  acquired: number;
  renewed: number;
  conflicts: number;
  errors: number;
  suspended: number;
  resumed: number;
  lost: number;
}

/** No key ever reaches this revision: a CAS expecting it can only be refused. */
export const PROBE_REVISION = 2 ** 48;

export class LeaseState {
  private readonly opts: LeaseOptions;
  private _role: LeaseRole = "standby";
  /** Last revision seen of the key: -1 never read, 0 absent. */
  private revision = -1;
  /** After a conflict our revision is known to be old: no CAS until a newer one is read. */
  private mustRead = false;
  private holderValue: LeaseValue | null = null;
  /** Own clock: when `revision` last changed as this replica saw it. */
  private changedAt = 0;
  /** Leader: send time of the last successful write of the lease. */
  private renewSentAt = 0;
  private myEpoch = 0;
  private maxEpoch = 0;
  private inFlight: (LeaseAction & { sentAt: number }) | null = null;
  private notBefore = 0;
  /** Standby: a probe or takeover got no answer; wait for the bucket to answer a probe. */
  private awaitWritable = false;
  /** Standby: when the last periodic probe was sent. */
  private probedAt = -Infinity;
  readonly counters: LeaseCounters = { acquired: 0, renewed: 0, conflicts: 0, errors: 0, suspended: 0, resumed: 0, lost: 0 };

  constructor(opts: LeaseOptions) {
    if (!(opts.marginMs > 0 && opts.marginMs < opts.ttlMs)) throw new RangeError("lease margin must be in (0, ttl)");
    if (!(opts.renewEveryMs > 0 && opts.renewEveryMs < opts.ttlMs - opts.marginMs)) throw new RangeError("lease renewEvery must be in (0, ttl - margin)");
    this.opts = opts;
  }

  get role(): LeaseRole {
    return this._role;
  }

  /** The current holder as last seen (null: free or unknown). */
  get holder(): LeaseValue | null {
    return this.holderValue;
  }

  get epoch(): number {
    return this._role === "standby" ? (this.holderValue?.epoch ?? 0) : this.myEpoch;
  }

  /** True when the adapter should read the key now (rather than at its next poll). */
  get needsRead(): boolean {
    return (this.revision < 0 || this.mustRead) && this.inFlight === null;
  }

  /** The one question asked before each write: leader, and its own deadline not passed. */
  canWrite(now: number): boolean {
    return this._role === "leader" && now - this.renewSentAt < this.opts.ttlMs - this.opts.marginMs;
  }

  /**
   * The key as read (or watched): `revision` 0 and `value` null when it does not exist; `value`
   * null for a delete marker or an unreadable value (the key is then free to take).
   */
  observe(revision: number, value: LeaseValue | null, now: number): LeaseEvent[] {
    // Only a newer revision is news (a read served by a lagging replica may be older).
    if (revision <= this.revision) return [];
    this.mustRead = false;
    this.awaitWritable = false; // someone wrote: the bucket is writable
    this.revision = revision;
    this.holderValue = value;
    this.changedAt = now;
    if (value) this.maxEpoch = Math.max(this.maxEpoch, value.epoch);
    if (this._role !== "standby" && !(value && value.registryId === this.opts.registryId && value.epoch === this.myEpoch)) {
      return [this.lose("superseded")];
    }
    // Our own term at a newer revision (a renew of ours that committed after its answer timed
    // out): the next renew expects it. The deadline still counts from the last renew answered.
    return [];
  }

  /** Time passes: returns what happened and the CAS to perform now (if any). */
  tick(now: number): { events: LeaseEvent[]; action: LeaseAction | null } {
    const events: LeaseEvent[] = [];
    if (this._role === "leader" && !this.canWrite(now)) {
      this._role = "suspended";
      this.counters.suspended++;
      events.push({ type: "suspended", epoch: this.myEpoch, sinceRenewMs: now - this.renewSentAt });
    }
    if (this.inFlight || this.revision < 0 || this.mustRead || now < this.notBefore) return { events, action: null };
    let action: LeaseAction | null = null;
    if (this._role === "leader" || this._role === "suspended") {
      if (this._role === "suspended" || now - this.renewSentAt >= this.opts.renewEveryMs) {
        action = { type: "renew", expectRevision: this.revision, value: this.valueOf(this.myEpoch) };
      }
    } else if (this.awaitWritable) {
      action = { type: "probe", expectRevision: PROBE_REVISION, value: this.valueOf(this.maxEpoch + 1) };
    } else {
      const ttl = Math.max(this.opts.ttlMs, this.holderValue?.ttlMs ?? 0);
      // Our own id in the key as a standby: an acquire of ours whose answer was lost. Free to take.
      const free = this.holderValue === null || this.holderValue.registryId === this.opts.registryId;
      if (free || now - this.changedAt >= ttl) {
        action = { type: "acquire", expectRevision: this.revision, value: this.valueOf(this.maxEpoch + 1) };
      } else if (now - this.probedAt >= this.opts.renewEveryMs) {
        // Is the bucket writable (could the holder renew)? An election must not go unnoticed.
        this.probedAt = now;
        action = { type: "probe", expectRevision: PROBE_REVISION, value: this.valueOf(this.maxEpoch + 1) };
      }
    }
    if (action) this.inFlight = { ...action, sentAt: now };
    return { events, action };
  }

  /** The CAS asked by the last `tick` succeeded and the key is now at `revision`. */
  succeeded(revision: number, now: number): LeaseEvent[] {
    const a = this.inFlight;
    if (!a) return [];
    this.inFlight = null;
    if (a.type === "probe") return []; // cannot happen: no key reaches PROBE_REVISION
    this.revision = revision;
    this.holderValue = a.value;
    this.changedAt = now;
    this.maxEpoch = Math.max(this.maxEpoch, a.value.epoch);
    this.renewSentAt = a.sentAt;
    if (a.type === "acquire") {
      if (this._role !== "standby") return []; // cannot happen: only standbys acquire
      this._role = "leader";
      this.myEpoch = a.value.epoch;
      this.counters.acquired++;
      return [{ type: "elected", epoch: this.myEpoch }];
    }
    this.counters.renewed++;
    if (this._role === "suspended") {
      this._role = "leader";
      this.counters.resumed++;
      return [{ type: "resumed", epoch: this.myEpoch }];
    }
    return [];
  }

  /**
   * The CAS was refused: the key changed since our revision. A standby reads it again. A holder
   * does not give up yet: the change may be its own earlier renew whose answer came too late (a
   * timeout under load, the write committed): it reads the key, and `observe` decides: our id and
   * epoch (nobody else wrote: a taker writes its own id and a higher epoch) → still the holder;
   * anything else → superseded. Meanwhile its own deadline still bounds its writes, as for a renew
   * without an answer, so this is as safe as waiting.
   */
  conflict(now: number): LeaseEvent[] {
    if (!this.inFlight) return [];
    const probe = this.inFlight.type === "probe";
    const expected = this.inFlight.expectRevision;
    this.inFlight = null;
    if (probe) {
      // The bucket answers again after an unanswered CAS: the holder could not renew meanwhile,
      // so it gets a full ttl from now. Writable all along: nothing changes (a dead holder is
      // still replaced after its ttl).
      if (this.awaitWritable) {
        this.awaitWritable = false;
        this.changedAt = now;
      }
      return [];
    }
    this.counters.conflicts++;
    // Only if no newer revision was read while the CAS was out: a read returning the revision
    // already seen is no news (`observe` ignores it), so waiting for one would wait forever.
    this.mustRead = this.revision <= expected;
    this.changedAt = now;
    return [];
  }

  /**
   * The CAS got no answer (timeout, no stream leader, disconnected): the outcome is unknown (a
   * later read tells). A holder retries soon; a standby probes until the bucket answers, then
   * restarts its silence window.
   */
  failed(now: number): LeaseEvent[] {
    if (!this.inFlight) return [];
    this.inFlight = null;
    this.counters.errors++;
    if (this._role === "standby") this.awaitWritable = true;
    this.notBefore = now + this.opts.retryEveryMs;
    return [];
  }

  /** Last revision seen of the key (-1 never read, 0 absent). */
  get keyRevision(): number {
    return this.revision;
  }

  /**
   * The lease bucket was recreated empty (a NATS node back with an empty store): the key and its
   * revision are gone. A holder writes its lease again (a create, answered like a renew, so a
   * suspended holder resumes); a standby forgets what it saw and reads afresh. Call only with no
   * CAS in flight.
   */
  storeRecreated(now: number): LeaseAction | null {
    this.inFlight = null;
    this.mustRead = false;
    this.awaitWritable = false;
    this.changedAt = now;
    if (this._role === "standby") {
      this.revision = -1;
      this.holderValue = null;
      return null;
    }
    const action: LeaseAction = { type: "renew", expectRevision: 0, value: this.valueOf(this.myEpoch) };
    this.inFlight = { ...action, sentAt: now };
    return action;
  }

  /** A graceful stop: the adapter deletes the key (CAS) so a standby takes over at once. */
  release(): { expectRevision: number } | null {
    if (this._role === "standby" || this.revision <= 0) return null;
    this._role = "standby";
    return { expectRevision: this.revision };
  }

  private lose(reason: "superseded"): LeaseEvent {
    this._role = "standby";
    this.counters.lost++;
    return { type: "lost", epoch: this.myEpoch, reason };
  }

  private valueOf(epoch: number): LeaseValue {
    return { registryId: this.opts.registryId, epoch, ttlMs: this.opts.ttlMs };
  }
}
