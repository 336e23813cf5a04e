import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { RosterError } from "roster-schemas";
import { AGENT_ERROR_CODES, AgentError, ConfigError, HTTP_STATUS } from "../../src/errors.js";

const readme = readFileSync(fileURLToPath(new URL("../../../README.md", import.meta.url)), "utf8");

describe("errors", () => {
  it("errors - every code is ROSTER_-prefixed, has an HTTP status and a row in README.md", () => {
    for (const code of Object.keys(AGENT_ERROR_CODES)) {
      assert.match(code, /^ROSTER_[A-Z_]+$/);
      assert.ok(HTTP_STATUS[code as keyof typeof HTTP_STATUS] >= 400, code);
      assert.match(readme, new RegExp(`\\| \`${code}\` \\|`), `${code} is missing from the README errors table`);
    }
    assert.deepEqual(Object.keys(HTTP_STATUS).sort(), Object.keys(AGENT_ERROR_CODES).sort());
  });

  it("errors - classes extend RosterError and keep the cause", () => {
    const cause = new Error("low");
    const e = new ConfigError("ROSTER_CONFIG_INVALID", "a.yaml", ["x: bad"], { cause });
    assert.ok(e instanceof AgentError && e instanceof RosterError);
    assert.equal(e.code, "ROSTER_CONFIG_INVALID");
    assert.equal(e.cause, cause);
    assert.equal(e.name, "ConfigError");
    assert.equal(e.message, "invalid config a.yaml:\n  x: bad");
  });
});
