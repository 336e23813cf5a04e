/**
 * Bounded per-service history of recent catalog changes, so an HTTP stream consumer that
 * reconnects with `Last-Event-ID: <revision>` gets only what it missed. Pure: no I/O, no clock.
 *
 * Each service keeps its last `perService` changes and a `floor`: every change of the service
 * with a revision above `floor` is in the ring. A resume from `after` is possible when
 * `floor <= after <= the service's revision`; otherwise the caller sends a snapshot.
 */
export interface LoggedChange<R> {
  service: string;
  id: string;
  revision: number;
  prevRevision: number;
  record: R | null;
  /** When the caller saw the change (epoch ms; the caller's clock, for history views). */
  at?: number;
}

interface Ring<R> {
  floor: number;
  changes: Array<LoggedChange<R>>;
}

export class ChangeLog<R> {
  private readonly rings = new Map<string, Ring<R>>();
  readonly perService: number;

  constructor(perService = 256) {
    if (!Number.isInteger(perService) || perService < 1) throw new RangeError("perService must be a positive integer");
    this.perService = perService;
  }

  record(change: LoggedChange<R>): void {
    let ring = this.rings.get(change.service);
    if (!ring) {
      // Everything of this service up to prevRevision happened before we watched it.
      ring = { floor: change.prevRevision, changes: [] };
      this.rings.set(change.service, ring);
    }
    ring.changes.push(change);
    if (ring.changes.length > this.perService) {
      const evicted = ring.changes.shift()!;
      ring.floor = evicted.revision;
    }
  }

  /**
   * The changes of `service` after revision `after`, oldest first, or null when they are not
   * all held (too old, or `after` is ahead of the service: another catalog). `current` is the
   * service's revision now (0 if unknown).
   */
  since(service: string, after: number, current: number): Array<LoggedChange<R>> | null {
    if (after === current) return [];
    if (after > current) return null;
    const ring = this.rings.get(service);
    if (!ring || after < ring.floor) return null;
    return ring.changes.filter((c) => c.revision > after);
  }

  /**
   * The changes of every service after global revision `after`, in revision order, or null
   * when some service changed after `after` and its ring does not reach back that far.
   */
  sinceAll(after: number, services: Iterable<{ name: string; revision: number }>, current: number): Array<LoggedChange<R>> | null {
    if (after > current) return null;
    const out: Array<LoggedChange<R>> = [];
    for (const s of services) {
      if (s.revision <= after) continue;
      const part = this.since(s.name, after, s.revision);
      if (part === null) return null;
      out.push(...part);
    }
    return out.sort((a, b) => a.revision - b.revision);
  }

  /**
   * Every change of `service` still held, oldest first, and `floor`: the changes at or below it
   * are gone (0: the ring holds the service's whole history since this process watched it).
   */
  held(service: string): { floor: number; changes: ReadonlyArray<LoggedChange<R>> } {
    const ring = this.rings.get(service);
    return ring ? { floor: ring.floor, changes: [...ring.changes] } : { floor: 0, changes: [] };
  }

  /** Number of changes held (for status and tests). */
  get size(): number {
    let n = 0;
    for (const r of this.rings.values()) n += r.changes.length;
    return n;
  }
}
