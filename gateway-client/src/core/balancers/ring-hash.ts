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
 * Lookup is a binary search, O(log R). A key whose owner is not allowed (already tried)
 * walks clockwise to the next allowed endpoint. Slow start and the warning factor do not
 * apply here: changing weights would move keys (Envoy likewise has no slow start on
 * ring hash).
 */
export class RingHashBalancer implements Balancer {
  private candidates: readonly Candidate[] = [];
  private ring = new Float64Array(0);
  private readonly pointCache = new Map<string, Uint32Array>();
  private signature = "";

  constructor(
    private readonly options: RingHashOptions,
    private readonly random: Random,
  ) {}

  update(candidates: readonly Candidate[]): void {
    const signature = candidates.map((c) => `${c.endpoint.id}:${c.endpoint.weight}`).join(",");
    this.candidates = candidates;
    if (signature === this.signature) return;
    this.signature = signature;
    if (candidates.length >= OWNER_BITS) throw new RangeError("ring-hash supports at most 2^20 endpoints");

    const wanted = candidates.map((c) => Math.max(1, Math.round((this.options.virtualNodes * c.endpoint.weight) / 100)));
    const total = wanted.reduce((a, b) => a + b, 0);
    const scale = total > this.options.maxRingSize ? this.options.maxRingSize / total : 1;
    const counts = wanted.map((w) => Math.max(1, Math.floor(w * scale)));

    const live = new Set<string>();
    let size = 0;
    for (const n of counts) size += n;
    const ring = new Float64Array(size);
    let k = 0;
    candidates.forEach((c, owner) => {
      const points = this.points(c.endpoint.id, counts[owner]!);
      live.add(`${c.endpoint.id}/${points.length}`);
      for (const p of points) ring[k++] = p * OWNER_BITS + owner;
    });
    ring.sort();
    this.ring = ring;
    for (const key of this.pointCache.keys()) if (!live.has(key)) this.pointCache.delete(key);
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
