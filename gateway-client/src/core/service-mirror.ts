// One followed service's mirror as a pure state machine: list-then-watch delta chaining. The
// adapter (adapters/mirror.ts) feeds it deltas from the catalog subject, snapshots it fetched
// (paging, timeouts, backoff are the adapter's) and last-known-good copies, and acts on what it
// returns: start a sync on a gap, back off and fetch again when a snapshot is older than a
// delta held, emit `change`, count drops. No I/O, no clock.
import type { CatalogDelta, CatalogInstance, Snapshot } from "roster-schemas";

/** Snapshots in a row at the same revision that still leave a buffered delta unchained before it is dropped. */
export const MAX_SAME_SNAPSHOT_GAPS = 3;

/** Counters the state machine adds to (the adapter's stats). */
export interface MirrorCounters {
  deltasApplied: number;
  duplicates: number;
  gaps: number;
}

export interface ServiceView {
  readonly service: string;
  readonly revision: number;
  readonly known: boolean;
  readonly instances: readonly CatalogInstance[];
  /** True while the copy comes from the last-known-good file and no snapshot arrived yet. */
  readonly fromLastKnownGood: boolean;
}

export type DeltaResult =
  /** A sync is under way: the delta waits for the snapshot (`overflowed`: the buffer was full and was emptied first). */
  | { readonly kind: "buffered"; readonly overflowed: boolean }
  | { readonly kind: "duplicate" }
  /** The delta does not chain onto the last one applied: it is buffered; the adapter must sync. */
  | { readonly kind: "gap" }
  | { readonly kind: "applied" };

export type SnapshotResult =
  /** In sync. `changed`: the view differs from before (emit `change`); `dropped`: deltas that chain onto nothing the registry has. */
  | { readonly kind: "synced"; readonly changed: boolean; readonly dropped: readonly CatalogDelta[] }
  /** The snapshot is older than a delta held (or one was lost in between): back off and fetch again. */
  | { readonly kind: "again" };

export class ServiceMirror {
  instances = new Map<string, CatalogInstance>();
  list: CatalogInstance[] = [];
  revision = 0;
  known = false;
  /** A snapshot or a last-known-good copy is there: requests can route. */
  ready = false;
  fromLkg = false;
  /** Non-null while a snapshot is being fetched: deltas wait here. */
  buffer: CatalogDelta[] | null = null;
  private gapRevision = -1;
  private sameGap = 0;

  constructor(
    readonly name: string,
    private readonly maxBufferedDeltas: number,
    private readonly counters: MirrorCounters,
  ) {}

  view(): ServiceView | undefined {
    if (!this.ready) return undefined;
    return { service: this.name, revision: this.revision, known: this.known, instances: this.list, fromLastKnownGood: this.fromLkg };
  }

  /** A valid delta of this service from the catalog subject. */
  onDelta(d: CatalogDelta): DeltaResult {
    if (this.buffer) {
      let overflowed = false;
      if (this.buffer.length >= this.maxBufferedDeltas) {
        this.buffer = [];
        overflowed = true;
      }
      this.buffer.push(d);
      return { kind: "buffered", overflowed };
    }
    if (d.revision <= this.revision) {
      this.counters.duplicates++;
      return { kind: "duplicate" };
    }
    if (d.prevRevision !== this.revision) {
      this.counters.gaps++;
      this.buffer = [d];
      return { kind: "gap" };
    }
    this.apply(d);
    this.list = [...this.instances.values()];
    return { kind: "applied" };
  }

  /** A sync starts: deltas are buffered from now on until `onSnapshot` says synced. */
  beginSync(): void {
    this.buffer ??= [];
    this.gapRevision = -1;
    this.sameGap = 0;
  }

  /** A whole snapshot arrived: it replaces the instances, then the buffered deltas newer than it chain on. */
  onSnapshot(snap: Snapshot): SnapshotResult {
    const before = this.revision;
    const beforeList = this.list;
    this.instances = new Map(snap.instances.filter((i) => i.service === this.name).map((i) => [i.id, i]));
    this.revision = snap.revision;
    this.known = snap.known;
    this.fromLkg = false;
    const buffered = (this.buffer ?? []).sort((a, b) => a.revision - b.revision);
    let gapAt = -1;
    for (let i = 0; i < buffered.length; i++) {
      const d = buffered[i]!;
      if (d.revision <= this.revision) {
        // Covered by the snapshot (or a repeat): discarded here, so counted once.
        this.counters.duplicates++;
        continue;
      }
      if (d.prevRevision !== this.revision) {
        gapAt = i;
        break;
      }
      this.apply(d);
    }
    const wasReady = this.ready;
    this.ready = true;
    let dropped: CatalogDelta[] = [];
    if (gapAt >= 0) {
      this.counters.gaps++;
      this.sameGap = snap.revision === this.gapRevision ? this.sameGap + 1 : 0;
      this.gapRevision = snap.revision;
      if (this.sameGap < MAX_SAME_SNAPSHOT_GAPS) {
        this.buffer = buffered.slice(gapAt);
        return { kind: "again" };
      }
      // The registry keeps answering the same revision, so those deltas chain onto nothing it has
      // (forged, or from another history): drop them rather than resync forever behind them.
      dropped = buffered.slice(gapAt);
    }
    this.buffer = null;
    const changed = !wasReady || before !== this.revision || !sameInstances(beforeList, this.instances);
    this.list = [...this.instances.values()];
    return { kind: "synced", changed, dropped };
  }

  /** A last-known-good copy; ignored (false) once a real snapshot is there. */
  loadCopy(instances: readonly CatalogInstance[], revision: number, known: boolean): boolean {
    if (this.ready) return false;
    this.instances = new Map(instances.filter((i) => i.service === this.name).map((i) => [i.id, i]));
    this.list = [...this.instances.values()];
    this.revision = revision;
    this.known = known;
    this.ready = true;
    this.fromLkg = true;
    return true;
  }

  private apply(d: CatalogDelta): void {
    if (d.op === "put") this.instances.set(d.instanceId, d.instance);
    else this.instances.delete(d.instanceId);
    this.revision = d.revision;
    this.known = true;
    this.fromLkg = false;
    this.counters.deltasApplied++;
  }
}

function sameInstances(list: readonly CatalogInstance[], now: Map<string, CatalogInstance>): boolean {
  if (list.length !== now.size) return false;
  for (const i of list) {
    const j = now.get(i.id);
    if (!j || j.updatedAt !== i.updatedAt || j.status !== i.status || j.address !== i.address || j.port !== i.port || j.weight !== i.weight) return false;
  }
  return true;
}
