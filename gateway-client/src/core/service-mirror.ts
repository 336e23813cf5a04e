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

/**
 * What one applied delta changed, for listeners that keep something per instance (a balancer):
 * they update that one instance instead of rebuilding from the whole list. `prevRevision` is
 * the revision the change applies on top of, so a listener can tell it missed none.
 */
export interface InstanceChange {
  readonly id: string;
  readonly prevRevision: number;
  readonly revision: number;
  /** The instance before the delta (undefined: it was not there). */
  readonly before: CatalogInstance | undefined;
  /** The instance after the delta (undefined: deleted). */
  readonly after: CatalogInstance | undefined;
}

export type DeltaResult =
  /** A sync is under way: the delta waits for the snapshot (`overflowed`: the buffer was full and was emptied first). */
  | { readonly kind: "buffered"; readonly overflowed: boolean }
  | { readonly kind: "duplicate" }
  /** The delta does not chain onto the last one applied: it is buffered; the adapter must sync. */
  | { readonly kind: "gap" }
  | { readonly kind: "applied"; readonly change: InstanceChange };

export type SnapshotResult =
  /** In sync. `changed`: the view differs from before (emit `change`); `dropped`: deltas that chain onto nothing the registry has. */
  | { readonly kind: "synced"; readonly changed: boolean; readonly dropped: readonly CatalogDelta[] }
  /** The snapshot is older than a delta held (or one was lost in between): back off and fetch again. */
  | { readonly kind: "again" };

export class ServiceMirror {
  instances = new Map<string, CatalogInstance>();
  /** `instances` as an array, made when asked for after a change (a delta costs O(1), not O(instances)). */
  private listCache: readonly CatalogInstance[] | undefined = [];
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

  /** The instances, in catalog (map) order; the same array until the next change. */
  get list(): readonly CatalogInstance[] {
    return (this.listCache ??= [...this.instances.values()]);
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
    const before = this.instances.get(d.instanceId);
    const prevRevision = this.revision;
    this.apply(d);
    return { kind: "applied", change: { id: d.instanceId, prevRevision, revision: d.revision, before, after: d.op === "put" ? d.instance : undefined } };
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
    const beforeInstances = this.instances;
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
    const changed = !wasReady || before !== this.revision || !sameInstances(beforeInstances, this.instances);
    this.listCache = undefined;
    return { kind: "synced", changed, dropped };
  }

  /** A last-known-good copy; ignored (false) once a real snapshot is there. */
  loadCopy(instances: readonly CatalogInstance[], revision: number, known: boolean): boolean {
    if (this.ready) return false;
    this.instances = new Map(instances.filter((i) => i.service === this.name).map((i) => [i.id, i]));
    this.listCache = undefined;
    this.revision = revision;
    this.known = known;
    this.ready = true;
    this.fromLkg = true;
    return true;
  }

  private apply(d: CatalogDelta): void {
    if (d.op === "put") this.instances.set(d.instanceId, d.instance);
    else this.instances.delete(d.instanceId);
    this.listCache = undefined;
    this.revision = d.revision;
    this.known = true;
    this.fromLkg = false;
    this.counters.deltasApplied++;
  }
}

function sameInstances(was: ReadonlyMap<string, CatalogInstance>, now: ReadonlyMap<string, CatalogInstance>): boolean {
  if (was.size !== now.size) return false;
  for (const i of was.values()) {
    const j = now.get(i.id);
    if (!j || j.updatedAt !== i.updatedAt || j.status !== i.status || j.address !== i.address || j.port !== i.port || j.weight !== i.weight) return false;
  }
  return true;
}
