// Every stable error code used in the source is documented, once, in docs/errors.md
// (fastify's habit: an error catalogue and a test that keeps it honest).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { filesUnder } from "roster-testkit";
import { describe, it } from "node:test";

const root = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..");

describe("errors", () => {
  const used = new Map<string, string>();
  for (const pkg of ["schemas", "agent", "registry", "gateway-client", "cli"]) {
    for (const file of filesUnder(join(root, pkg, "src"), ".ts")) {
      for (const m of readFileSync(file, "utf8").matchAll(/["'`](ROSTER_[A-Z0-9_]+)["'`]/g)) used.set(m[1]!, file);
    }
  }
  const doc = readFileSync(join(root, "docs", "errors.md"), "utf8");
  const documented = [...doc.matchAll(/^\|\s*`(ROSTER_[A-Z0-9_]+)`/gm)].map((m) => m[1]!);

  it("errors - the source uses stable ROSTER_ codes", () => {
    assert.ok(used.size >= 5, `found only ${[...used.keys()].join(", ")}`);
  });

  it("errors - every code in the source is documented in docs/errors.md", () => {
    const missing = [...used.keys()].filter((c) => !documented.includes(c));
    assert.deepEqual(missing, [], `undocumented: ${missing.map((c) => `${c} (${used.get(c)})`).join(", ")}`);
  });

  it("errors - every documented code is documented once and still used", () => {
    const dupes = documented.filter((c, i) => documented.indexOf(c) !== i);
    assert.deepEqual(dupes, []);
    const stale = documented.filter((c) => !used.has(c));
    assert.deepEqual(stale, [], `documented but unused: ${stale.join(", ")}`);
  });
});
