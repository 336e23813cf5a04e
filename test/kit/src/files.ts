import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

/** Every file under `dir` (recursively) whose name ends with `match` (a string) or matches it (a RegExp), sorted. */
export function filesUnder(dir: string, match: string | RegExp): string[] {
  const test = typeof match === "string" ? (name: string) => name.endsWith(match) : (name: string) => match.test(name);
  const out: string[] = [];
  const visit = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) visit(p);
      else if (test(name)) out.push(p);
    }
  };
  visit(dir);
  return out.sort();
}
