// The roster-registry command line, as a real process.
import assert from "node:assert/strict";
import { join, resolve } from "node:path";
import { describe, it } from "node:test";
import { spawnNode } from "@roster/testkit";

const BIN = join(resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..", ".."), "bin", "roster-registry.js");

describe("registry cli", () => {
  it("cli - --help prints the usage and exits 0", async () => {
    const p = spawnNode(BIN, ["--help"]);
    const exit = await p.exited;
    assert.equal(exit.code, 0);
    assert.match(p.output, /usage: roster-registry/);
  });

  it("cli - a bad flag exits 1 naming it, without a stack trace", async () => {
    const p = spawnNode(BIN, ["--http", "nonsense"]);
    const exit = await p.exited;
    assert.equal(exit.code, 1);
    assert.match(p.output, /http\.listen: expected "host:port"/);
    assert.doesNotMatch(p.output, /\n\s+at /);
  });
});
