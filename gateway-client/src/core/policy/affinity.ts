import type { Policy } from "roster-schemas";
import type { HeaderLookup } from "./headers.js";

export type PolicyAffinity = NonNullable<Policy["affinity"]>;

/** Longest affinity key kept; a longer value is hashed as its first this-many characters. */
const MAX_KEY = 512;

/** The value of cookie `name` in a Cookie header (`a=1; b=2`), or undefined. */
export function cookieValue(cookieHeader: string | undefined, name: string): string | undefined {
  if (!cookieHeader) return undefined;
  for (const part of cookieHeader.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) {
      let v = part.slice(eq + 1).trim();
      if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
      return v;
    }
  }
  return undefined;
}

/**
 * The consistent-hashing key of a request under an affinity: a header's value or a cookie's.
 * Undefined when the request has none (it is then balanced like any other).
 */
export function affinityKey(affinity: PolicyAffinity | undefined, header: HeaderLookup): string | undefined {
  if (!affinity) return undefined;
  const v = "header" in affinity ? header(affinity.header) : cookieValue(header("cookie"), affinity.cookie);
  if (v === undefined || v === "") return undefined;
  return v.length > MAX_KEY ? v.slice(0, MAX_KEY) : v;
}
