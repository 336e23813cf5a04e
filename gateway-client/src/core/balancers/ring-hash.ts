import { murmur3 } from "../hash.js";
import type { Balancer, BalancerPickContext, Candidate, Random } from "./balancer.js";
import { weightedAmong } from "./balancer.js";

export interface RingHashOptions {
  /**
   * Points on the ring for an endpoint of weight 100 (the catalog default); an endpoint of
   * weight w gets max(1, round(virtualNodes × w / 100)). libketama uses 160 per server.
   */
  readonly virtualNodes: number;
  /** Upper bound on the ring size; above it every endpoint's share is scaled down. */
  readonly maxRingSize: number;
}

/** Owner index packed below the hash in one float64: hash × 2^20 + owner (≤ 2^52). */
const OWNER_BITS = 2 ** 20;

/**
 * Consistent hashing on `hashKey` (Envoy RING_HASH / libketama). Each endpoint's points
 * are `murmur3("<id>_<i>")`, a function of its own id and weight only, so adding or
 * removing one endpoint (or ejecting it) moves only the keys that land on its points:
 * about 1/N of them, and no key moves between two other endpoints. (Envoy sizes points
 * from the whole set's normalised weights, which moves a few keys between survivors;
 * Maglev also trades a little disruption for balance. We chose zero disruption.)
 * When few endpoints come or go (a health flip) the ring is patched from the previous one in
 * O(R) instead of re-sorted, to the same array. Lookup is a binary search, O(log R). A key whose owner is not allowed (already tried)
 * walks clockwise to the next allowed endpoint. Slow start and the warning factor do not
 * apply here: changing weights would move keys (Envoy likewise has no slow start on
 * ring hash).
 */
export class RingHashBalancer implements Balancer {
  private candidates: readonly Candidate[] = [];
  private ring: Float64Array = new Float64Array(0);
  /** The buffer `ring` views, and another one the next patched ring is written into (then swapped): a flip allocates no 2.5 MB. */
  private store: Float64Array = this.ring;
  private spare: Float64Array = new Float64Array(0);
  private readonly pointCache = new Map<string, Uint32Array>();
  private signature = "";
  /** Points per candidate of the ring (same order as `candidates`), and whether they were scaled down. */
  private counts: readonly number[] = [];
  private scaled = false;

  constructor(
    private readonly options: RingHashOptions,
    private readonly random: Random,
  ) {}

  update(candidates: readonly Candidate[]): void {
    const signature = candidates.map((c) => `${c.endpoint.id}:${c.endpoint.weight}`).join(",");
    const previous = this.candidates;
    this.candidates = candidates;
    if (signature === this.signature) return;
    this.signature = signature;
    if (candidates.length >= OWNER_BITS) throw new RangeError("ring-hash supports at most 2^20 endpoints");

    const wanted = candidates.map((c) => Math.max(1, Math.round((this.options.virtualNodes * c.endpoint.weight) / 100)));
    const total = wanted.reduce((a, b) => a + b, 0);
    const scale = total > this.options.maxRingSize ? this.options.maxRingSize / total : 1;
    const counts = wanted.map((w) => Math.max(1, Math.floor(w * scale)));

    const live = new Set<string>();
    for (let i = 0; i < candidates.length; i++) live.add(`${candidates[i]!.endpoint.id}/${counts[i]}`);
    const ring = (!this.scaled && scale === 1 && this.patched(previous, candidates, counts)) || this.built(candidates, counts);
    this.ring = ring;
    this.counts = counts;
    this.scaled = scale !== 1;
    for (const key of this.pointCache.keys()) if (!live.has(key)) this.pointCache.delete(key);
  }

  /** The ring from scratch: every point, sorted (O(R log R): ~50 ms at 2,000 endpoints × 160). */
  private built(candidates: readonly Candidate[], counts: readonly number[]): Float64Array {
    let size = 0;
    for (const n of counts) size += n;
    const ring = new Float64Array(size);
    let k = 0;
    candidates.forEach((c, owner) => {
      for (const p of this.points(c.endpoint.id, counts[owner]!)) ring[k++] = p * OWNER_BITS + owner;
    });
    this.store = ring;
    return ring.sort();
  }

  /**
   * The same ring as `built`, from the previous one when few endpoints came or went (a health
   * flip): their points are dropped or merged in, the others' owner numbers follow their new
   * places, in O(R) with no sort. Undefined when most of the ring would change anyway.
   */
  private patched(old: readonly Candidate[], candidates: readonly Candidate[], counts: readonly number[]): Float64Array | undefined {
    const oldCounts = this.counts;
    if (old.length === 0 || this.ring.length === 0) return undefined;
    const index = new Map<string, number>();
    for (let i = 0; i < candidates.length; i++) index.set(candidates[i]!.endpoint.id, i);
    // Old owner → new owner (-1: gone, or its number of points changed).
    const moved = new Int32Array(old.length);
    const kept = new Uint8Array(candidates.length);
    let keptPoints = 0;
    for (let i = 0; i < old.length; i++) {
      const j = index.get(old[i]!.endpoint.id);
      if (j !== undefined && counts[j] === oldCounts[i] && kept[j] === 0) {
        moved[i] = j;
        kept[j] = 1;
        keptPoints += counts[j]!;
      } else moved[i] = -1;
    }
    let size = 0;
    for (const n of counts) size += n;
    const addedPoints = size - keptPoints;
    if (addedPoints * 4 > size) return undefined;
    const added = new Float64Array(addedPoints);
    let a = 0;
    for (let j = 0; j < candidates.length; j++) {
      if (kept[j] === 1) continue;
      for (const p of this.points(candidates[j]!.endpoint.id, counts[j]!)) added[a++] = p * OWNER_BITS + j;
    }
    added.sort();
    const buffer = this.spare.length >= size ? this.spare : new Float64Array(size + (size >> 3));
    const ring = buffer.subarray(0, size);
    mergeRenumbered(this.ring, moved, added, ring);
    // Renumbering can swap two points with the same hash (different endpoints): put them back in order.
    insertionSort(ring);
    // The previous ring's buffer is the next spare (the caller replaces `ring` with this one).
    this.spare = this.store;
    this.store = buffer;
    return ring;
  }

  pick(ctx: BalancerPickContext, allowed?: (c: Candidate) => boolean): Candidate | undefined {
    const ring = this.ring;
    if (ring.length === 0) return undefined;
    if (ctx.hashKey === undefined) {
      // No key: behave like weighted random (Envoy picks a random ring position).
      return weightedAmong(this.candidates, allowed ?? (() => true), this.random);
    }
    const target = murmur3(ctx.hashKey) * OWNER_BITS;
    let lo = 0;
    let hi = ring.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ring[mid]! < target) lo = mid + 1;
      else hi = mid;
    }
    const start = lo === ring.length ? 0 : lo;
    for (let step = 0; step < ring.length; step++) {
      const packed = ring[(start + step) % ring.length]!;
      const c = this.candidates[packed % OWNER_BITS]!;
      if (!allowed || allowed(c)) return c;
    }
    return undefined;
  }

  private points(id: string, count: number): Uint32Array {
    const key = `${id}/${count}`;
    let points = this.pointCache.get(key);
    if (!points) {
      points = new Uint32Array(count);
      for (let i = 0; i < count; i++) points[i] = murmur3(`${id}_${i}`);
      this.pointCache.set(key, points);
    }
    return points;
  }
}

/** Into `out`: the points of `prev` whose owner stays (renumbered by `moved`), merged with `added` (sorted). */
function mergeRenumbered(prev: Float64Array, moved: Int32Array, added: Float64Array, out: Float64Array): void {
  let k = 0;
  let a = 0;
  for (let i = 0; i < prev.length; i++) {
    const packed = prev[i]!;
    const base = Math.floor(packed / OWNER_BITS) * OWNER_BITS; // exact (a power of two); `%` on doubles is slower
    const to = moved[(packed - base) | 0]!;
    if (to < 0) continue;
    const v = base + to;
    while (a < added.length && added[a]! < v) out[k++] = added[a++]!;
    out[k++] = v;
  }
  while (a < added.length) out[k++] = added[a++]!;
}

/** Sorts an almost sorted array in O(n + inversions). */
function insertionSort(a: Float64Array): void {
  for (let i = 1; i < a.length; i++) {
    const v = a[i]!;
    if (a[i - 1]! <= v) continue;
    let j = i - 1;
    while (j >= 0 && a[j]! > v) {
      a[j + 1] = a[j]!;
      j--;
    }
    a[j + 1] = v;
  }
}
