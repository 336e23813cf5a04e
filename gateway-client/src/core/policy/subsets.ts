import { inSubset, type SubsetSelector } from "roster-schemas";
import type { Endpoint } from "../types.js";

/**
 * Instances partitioned into a policy's named subsets (an instance may be in several). Rebuilt on
 * each membership change (rare), read per request: `members(subset)` is a ready array.
 */
export class SubsetIndex {
  private readonly bySubset = new Map<string, Endpoint[]>();

  constructor(private readonly selectors: Readonly<Record<string, SubsetSelector>>) {
    for (const name of Object.keys(selectors)) this.bySubset.set(name, []);
  }

  get names(): string[] {
    return [...this.bySubset.keys()];
  }

  update(endpoints: readonly Endpoint[]): void {
    for (const [name, sel] of Object.entries(this.selectors)) this.bySubset.set(name, endpoints.filter((e) => inSubset(sel, e)));
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
