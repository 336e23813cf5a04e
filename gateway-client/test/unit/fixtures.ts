// Shared fixtures of the core unit tests: catalog instances and a seeded random source.
import type { CatalogInstance } from "roster-schemas";

/** mulberry32: a small, fast, seedable PRNG (public domain) so distributions are reproducible. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function inst(id: string, extra: Partial<CatalogInstance> = {}): CatalogInstance {
  return {
    id,
    service: "svc",
    host: "host-1",
    address: "10.0.0.1",
    port: 8080,
    tags: [],
    meta: {},
    weight: 100,
    status: "passing",
    checks: [],
    epoch: 1,
    registeredAt: 0,
    updatedAt: 0,
    ...extra,
  };
}

export function insts(n: number, extra: Partial<CatalogInstance> = {}): CatalogInstance[] {
  return Array.from({ length: n }, (_, i) => inst(`i${i}`, extra));
}

/** Count picks per endpoint id. */
export function tally(ids: Iterable<string>): Map<string, number> {
  const m = new Map<string, number>();
  for (const id of ids) m.set(id, (m.get(id) ?? 0) + 1);
  return m;
}
