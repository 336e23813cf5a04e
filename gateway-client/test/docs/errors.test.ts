// Every error code of the package is unique, used, and documented in README.md's table.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { filesUnder } from "roster-testkit";
import { ERROR_CODES, InvalidOptionsError, createGateway } from "../../src/index.js";

const pkg = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..", "..");

describe("errors", () => {
  test("errors - codes are unique, each used in the source and documented in README.md", () => {
    assert.equal(new Set(ERROR_CODES).size, ERROR_CODES.length);
    const used = new Set<string>();
    for (const f of filesUnder(join(pkg, "src"), ".ts")) {
      if (f.endsWith("errors.ts")) {
        for (const m of readFileSync(f, "utf8").matchAll(/super\(\s*"(ROSTER_[A-Z_]+)"/g)) used.add(m[1]!);
      }
    }
    assert.deepEqual([...used].sort(), [...ERROR_CODES].sort());
    const readme = readFileSync(join(pkg, "README.md"), "utf8");
    const documented = [...readme.matchAll(/^\|\s*`(ROSTER_[A-Z_]+)`/gm)].map((m) => m[1]!);
    assert.deepEqual([...documented].sort(), [...ERROR_CODES].sort());
  });

  test("errors - bad options fail at once with ROSTER_INVALID_OPTIONS naming the field", async () => {
    await assert.rejects(createGateway({ nats: "nats://127.0.0.1:1", tryTimeout: "soon" }), (err: unknown) => {
      assert.ok(err instanceof InvalidOptionsError);
      assert.match(err.message, /tryTimeout/);
      return true;
    });
    await assert.rejects(createGateway({ nats: "nats://127.0.0.1:1", balancerOptions: { panicThreshold: 2 } }), (err: unknown) => {
      assert.ok(err instanceof InvalidOptionsError);
      assert.match(err.message, /panicThreshold/);
      return true;
    });
  });
});
