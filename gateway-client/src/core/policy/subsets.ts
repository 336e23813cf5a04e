import { inSubset, type SubsetSelector } from "roster-schemas";
import type { Endpoint } from "../types.js";

/**
 * Instances partitioned into a policy's named subsets (an instance may be in several). Rebuilt on
 * each change of the service's instances, read per request: `members(subset)` is a ready array.
 * Each endpoint's subsets are remembered by object: an endpoint's tags and meta never change (a
 * changed instance is a new object), so a health flip among n instances matches one of them, not n.
 */
export class SubsetIndex {
  private readonly bySubset = new Map<string, Endpoint[]>();
  private readonly subsetsByEndpoint = new WeakMap<Endpoint, readonly string[]>();

  constructor(private readonly selectors: Readonly<Record<string, SubsetSelector>>) {
    for (const name of Object.keys(selectors)) this.bySubset.set(name, []);
  }

  get names(): string[] {
    return [...this.bySubset.keys()];
  }

  update(endpoints: readonly Endpoint[]): void {
    const lists = new Map<string, Endpoint[]>();
    for (const name of this.bySubset.keys()) lists.set(name, []);
    for (const e of endpoints) {
      let names = this.subsetsByEndpoint.get(e);
      if (!names) this.subsetsByEndpoint.set(e, (names = this.subsetsOf(e)));
      for (const n of names) lists.get(n)!.push(e);
    }
    for (const [name, list] of lists) this.bySubset.set(name, list);
  }

  /** The instances of a subset ([] for an unknown name). */
  members(subset: string): readonly Endpoint[] {
    return this.bySubset.get(subset) ?? [];
  }

  /** The subsets an instance belongs to. */
  subsetsOf(endpoint: Pick<Endpoint, "tags" | "meta">): string[] {
    return Object.entries(this.selectors).filter(([, sel]) => inSubset(sel, endpoint)).map(([name]) => name);
  }
}
