import { parsePolicyBody, type Policy, type PolicyDelta } from "roster-schemas";

/** What became of one delta. */
export type DeltaVerdict =
  /** Applied: it chained on the last applied revision. */
  | "applied"
  /** Applied although it did not chain (a change was missed): a delta is the whole policy, so it heals the gap itself. */
  | "gap-applied"
  /** At or below the applied revision: a repeat, or already covered by a snapshot. */
  | "duplicate"
  /** Held until the snapshot in flight arrives. */
  | "buffered"
  /** Its policy failed validation: the previous policy stays in force. */
  | "invalid";

/**
 * One service's policy on a gateway client, as list-then-watch with full-state deltas: subscribe,
 * buffer deltas while the snapshot is in flight, apply the snapshot, then the buffered deltas
 * newer than it; afterwards apply each delta newer than the last applied revision. Every delta
 * carries the whole policy (or its removal), so a delta whose prevRevision is not the last applied
 * revision is a detected gap that the delta itself closes: no resync is needed, unlike instance
 * deltas (one instance each). A lost *last* change is healed by the resyncs on reconnect and on a
 * new registry epoch, as for instances. Pure.
 */
export class PolicyChain {
  revision = 0;
  /** The policy in force (parsed), or null when the service has none. */
  policy: Policy | null = null;
  /** The document in force as received (durations as text): what the last-known-good file keeps. */
  document: Record<string, unknown> | null = null;
  /** True once a snapshot (or a last-known-good copy) was applied. */
  ready = false;
  /** True while the policy comes from the last-known-good file and no snapshot arrived yet. */
  fromLastKnownGood = false;
  private buffer: PolicyDelta[] | null = null;
  readonly counters = { applied: 0, gaps: 0, duplicates: 0, invalid: 0, snapshots: 0 };

  /** A snapshot request is about to go out: hold deltas until it is answered. */
  beginSync(): void {
    this.buffer ??= [];
  }

  /** The snapshot failed: stop buffering (what was buffered is still newer than what we have, so apply it). */
  abortSync(): boolean {
    const buffered = this.buffer ?? [];
    this.buffer = null;
    const before = this.revision;
    for (const d of buffered.sort((a, b) => a.revision - b.revision)) this.applyDelta(d);
    return this.revision !== before;
  }

  onDelta(d: PolicyDelta): DeltaVerdict {
    if (this.buffer) {
      this.buffer.push(d);
      return "buffered";
    }
    return this.applyDelta(d);
  }

  /** Applies a snapshot then the buffered deltas newer than it; true when the revision in force changed. */
  onSnapshot(revision: number, body: Record<string, unknown> | null): boolean {
    const before = this.revision;
    const buffered = this.buffer ?? [];
    this.buffer = null;
    this.counters.snapshots++;
    // A snapshot older than what we hold (a slow answer after a newer delta) changes nothing,
    // unless what we hold is only the last-known-good copy.
    if (revision >= this.revision || this.fromLastKnownGood || !this.ready) this.set(revision, body);
    this.ready = true;
    this.fromLastKnownGood = false;
    for (const d of buffered.sort((a, b) => a.revision - b.revision)) this.applyDelta(d);
    return this.revision !== before;
  }

  /** A copy from the last-known-good file, used until the first snapshot. */
  loadLastKnownGood(revision: number, body: Record<string, unknown> | null): boolean {
    if (this.ready) return false;
    this.set(revision, body);
    this.ready = true;
    this.fromLastKnownGood = true;
    return true;
  }

  private applyDelta(d: PolicyDelta): DeltaVerdict {
    if (d.revision <= this.revision) {
      this.counters.duplicates++;
      return "duplicate";
    }
    const gap = d.prevRevision !== this.revision;
    if (!this.set(d.revision, d.op === "put" ? d.policy : null)) return "invalid";
    if (gap) this.counters.gaps++;
    else this.counters.applied++;
    return gap ? "gap-applied" : "applied";
  }

  /** False (and the previous policy kept) when the body does not parse. */
  private set(revision: number, body: Record<string, unknown> | null): boolean {
    if (body === null) {
      this.policy = null;
      this.document = null;
      this.revision = revision;
      return true;
    }
    const r = parsePolicyBody(body);
    this.revision = revision;
    if (!r.ok) {
      this.counters.invalid++;
      return false;
    }
    this.policy = r.policy;
    this.document = body;
    return true;
  }
}
