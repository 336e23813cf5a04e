import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { z } from "zod";
import * as schemas from "../../src/index.js";
import { decode, encode } from "../../src/index.js";
import { formatIssues } from "../../src/format.js";

// Fixtures live in the source tree; this file runs from dist/test/unit.
const FIXTURES = join(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..", "..", "test", "fixtures");

interface Fixture {
  schema: string;
  value: unknown;
  error?: string;
}

function load(kind: "valid" | "invalid"): Array<[string, Fixture]> {
  const dir = join(FIXTURES, kind);
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .map((f) => [f, JSON.parse(readFileSync(join(dir, f), "utf8")) as Fixture]);
}

function schemaOf(name: string): z.ZodType {
  const s = (schemas as Record<string, unknown>)[name];
  assert.ok(s && typeof (s as z.ZodType).safeParse === "function", `unknown schema ${name}`);
  return s as z.ZodType;
}

describe("fixtures", () => {
  const valid = load("valid");
  const invalid = load("invalid");

  it("fixtures - there are golden fixtures of every message", () => {
    const covered = new Set(valid.map(([, f]) => f.schema));
    for (const name of ["RegisterMessage", "HeartbeatMessage", "HealthMessage", "DeregisterMessage", "CatalogInstance", "CatalogDelta", "Snapshot", "SnapshotRequest", "PresenceMessage", "ResyncMessage"]) {
      assert.ok(covered.has(name), `no valid fixture for ${name}`);
    }
    assert.ok(invalid.length >= 10);
  });

  for (const [file, fx] of valid) {
    it(`fixtures - valid/${file} round-trips through encode and decode`, () => {
      const schema = schemaOf(fx.schema);
      const bytes = encode(schema, fx.value as never);
      const back = decode(schema, bytes);
      assert.ok(back.ok, back.ok ? "" : back.error);
      assert.deepEqual(back.value, fx.value);
    });
  }

  for (const [file, fx] of invalid) {
    it(`fixtures - invalid/${file} is rejected with a readable message`, () => {
      const schema = schemaOf(fx.schema);
      const r = decode(schema, JSON.stringify(fx.value));
      assert.equal(r.ok, false);
      if (r.ok) return;
      assert.equal(r.reason, "invalid");
      assert.ok(r.error.includes(fx.error!), `expected "${fx.error}" in: ${r.error}`);
      assert.throws(() => encode(schema, fx.value as never), /ROSTER|invalid/);
    });
  }
});

describe("codec", () => {
  it("codec - oversized payloads are rejected before parsing", () => {
    const big = JSON.stringify({ pad: "x".repeat(schemas.LIMITS.maxMessageBytes) });
    const r = decode(schemas.HeartbeatMessage, big);
    assert.deepEqual(r.ok ? null : r.reason, "too-large");
  });

  it("codec - non-JSON and hostile payloads never throw", () => {
    for (const payload of ["", "{", "null", "[]", "\u0000\u0001", '{"__proto__":{"polluted":1}}', "1e999999"]) {
      const r = decode(schemas.RegisterMessage, payload);
      assert.equal(r.ok, false, payload);
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  it("codec - decode (through the schema's z.compile clone) answers exactly what the schema itself does", () => {
    // The compiled fast path must be invisible: same values for valid input, same messages (field
    // paths included) for invalid input, which falls back to the schema's own parser.
    for (const [file, fx] of [...load("valid"), ...load("invalid")]) {
      const schema = schemaOf(fx.schema);
      const own = schema.safeParse(fx.value);
      const r = decode(schema, JSON.stringify(fx.value));
      if (own.success) assert.deepEqual(r, { ok: true, value: own.data }, file);
      else assert.deepEqual(r, { ok: false, reason: "invalid", error: formatIssues(own.error).join("; ") }, file);
    }
  });

  it("codec - unknown fields are dropped (tolerant reader), known ones kept", () => {
    const value = JSON.parse(readFileSync(join(FIXTURES, "valid", "resync.json"), "utf8")).value;
    const r = decode(schemas.ResyncMessage, JSON.stringify({ ...value, future: true }));
    assert.ok(r.ok);
    assert.deepEqual(r.value, value);
  });
});
