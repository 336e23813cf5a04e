// The roster-agent command line as a real process: --version, --help, a bad flag named.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, it } from "node:test";
import { spawnNode } from "roster-testkit";

const PKG = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..", "..");
const BIN = join(PKG, "bin", "roster-agent.js");

describe("agent cli flags", () => {
  it("cli-flags - --version prints the package's version and exits 0", async () => {
    const { version } = JSON.parse(readFileSync(join(PKG, "package.json"), "utf8")) as { version: string };
    for (const flag of ["--version", "-v"]) {
      const p = spawnNode(BIN, [flag]);
      assert.equal((await p.exited).code, 0);
      assert.equal(p.output, `roster-agent ${version} (node ${process.version})\n`);
    }
  });

  it("cli-flags - --help prints the usage with every flag", async () => {
    const p = spawnNode(BIN, ["--help"]);
    assert.equal((await p.exited).code, 0);
    for (const flag of ["--config", "--nats", "--api", "--log-level", "--version", "--help"]) assert.ok(p.output.includes(flag), flag);
  });

  it("cli-flags - an unknown flag exits 1 naming it", async () => {
    const p = spawnNode(BIN, ["--confg", "agent.yaml"]);
    assert.equal((await p.exited).code, 1);
    assert.match(p.output, /Unknown option '--confg'/);
    assert.doesNotMatch(p.output, /\n\s+at /);
  });
});
