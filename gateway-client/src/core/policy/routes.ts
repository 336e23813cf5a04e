import type { Policy } from "roster-schemas";
import type { HeaderLookup } from "./headers.js";

export type PolicyRoute = NonNullable<Policy["routes"]>[number];
type HeaderMatch = PolicyRoute["match"]["headers"][string];

function matches(m: HeaderMatch, value: string | undefined): boolean {
  if (typeof m === "string") return value === m;
  if ("exact" in m) return value === m.exact;
  if ("prefix" in m) return value !== undefined && value.startsWith(m.prefix);
  return (value !== undefined) === m.present;
}

/** The first route whose every header condition holds (first match wins), or undefined. */
export function matchRoute(routes: readonly PolicyRoute[] | undefined, header: HeaderLookup): PolicyRoute | undefined {
  if (!routes) return undefined;
  for (const r of routes) {
    let all = true;
    for (const [name, m] of Object.entries(r.match.headers)) {
      if (!matches(m, header(name))) {
        all = false;
        break;
      }
    }
    if (all) return r;
  }
  return undefined;
}
