import type { CatalogInstance } from "roster-schemas";

/** One instance's encoded JSON, kept while its record is the same object. */
export interface Fragment {
  readonly id: string;
  readonly record: CatalogInstance;
  readonly bytes: Uint8Array;
  /** Sync pass that last saw this instance (finds the removed ones without a second map). */
  seen: number;
}

/** The catalog's order: instances sorted by id (docs/protocol.md), as `CatalogMemory.service` sorts. */
export const byId = (a: { id: string }, b: { id: string }): number => a.id.localeCompare(b.id);

/**
 * A service's instances as encoded fragments, sorted by id, brought up to date by `sync` at a cost
 * of what changed: a record is replaced (never mutated) when its instance changes, so an instance
 * whose record is the same object keeps its bytes, and only new or changed records are encoded.
 * Serving a large service after one change then costs one encode and a copy of bytes, not an
 * encode of every instance (issue 11, "bulk work costs what changed").
 */
export class ServiceFragments {
  private order: Fragment[] = [];
  private readonly byKey = new Map<string, Fragment>();
  private pass = 0;
  /** Instances encoded so far (tests: one change costs one). */
  encodes = 0;

  constructor(private readonly encodeOne: (record: CatalogInstance) => Uint8Array) {}

  /**
   * Brings the fragments up to `live` (id → current record) and returns them sorted by id. The
   * returned array is replaced, never changed, by a later sync: a caller may keep it as the
   * fragments of one revision.
   */
  sync(live: ReadonlyMap<string, CatalogInstance>): readonly Fragment[] {
    const pass = ++this.pass;
    const added: Fragment[] = [];
    const replaced = new Map<string, Fragment>();
    for (const [id, record] of live) {
      const f = this.byKey.get(id);
      if (f && f.record === record) {
        f.seen = pass;
        continue;
      }
      const fresh: Fragment = { id, record, bytes: this.encodeOne(record), seen: pass };
      this.encodes++;
      this.byKey.set(id, fresh);
      if (f) replaced.set(id, fresh);
      else added.push(fresh);
    }
    // Every live id is in the map now: anything more was removed.
    const removed = this.byKey.size > live.size;
    if (added.length === 0 && replaced.size === 0 && !removed) return this.order;
    let next = this.order.map((f) => replaced.get(f.id) ?? f);
    if (removed) {
      next = next.filter((f) => {
        if (f.seen === pass) return true;
        this.byKey.delete(f.id);
        return false;
      });
    }
    if (added.length > 0) next = mergeSorted(next, added.sort(byId));
    this.order = next;
    return next;
  }

  get size(): number {
    return this.order.length;
  }
}

/** Merges two lists sorted by id (the new ones are few: O(n) pointer copies, no re-sort). */
function mergeSorted(a: readonly Fragment[], b: readonly Fragment[]): Fragment[] {
  const out: Fragment[] = new Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < a.length && j < b.length) out[k++] = byId(a[i]!, b[j]!) <= 0 ? a[i++]! : b[j++]!;
  while (i < a.length) out[k++] = a[i++]!;
  while (j < b.length) out[k++] = b[j++]!;
  return out;
}

/**
 * Cuts fragments into pages whose joined size (a comma between two) stays under `budget` bytes:
 * returns the index where each page starts. Deterministic for a given list (every replica cuts the
 * same pages for a revision); a fragment larger than the budget gets a page of its own.
 */
export function pageStarts(fragments: readonly Fragment[], budget: number): number[] {
  const starts = [0];
  let size = 0;
  for (let i = 0; i < fragments.length; i++) {
    const bytes = fragments[i]!.bytes.byteLength + 1;
    if (size + bytes > budget && i > starts[starts.length - 1]!) {
      starts.push(i);
      size = 0;
    }
    size += bytes;
  }
  return starts;
}

/** `prefix` + the fragments joined by commas + `suffix`, in one buffer (one copy of each). */
export function joinFragments(prefix: Uint8Array, fragments: readonly Fragment[], suffix: Uint8Array): Uint8Array {
  let total = prefix.byteLength + suffix.byteLength + Math.max(0, fragments.length - 1);
  for (const f of fragments) total += f.bytes.byteLength;
  const out = new Uint8Array(total);
  out.set(prefix, 0);
  let at = prefix.byteLength;
  for (let i = 0; i < fragments.length; i++) {
    if (i > 0) out[at++] = 0x2c; // ","
    out.set(fragments[i]!.bytes, at);
    at += fragments[i]!.bytes.byteLength;
  }
  out.set(suffix, at);
  return out;
}
