import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseConfig } from "../../src/config.js";
import { ConfigError } from "../../src/errors.js";

describe("registry lease config", () => {
  it("lease config - off by default, ttl 3 s, margin 1 s", () => {
    assert.deepEqual(parseConfig({}).lease, { enabled: false, ttl: 3000, margin: 1000 });
    assert.deepEqual(parseConfig({ lease: { enabled: true, ttl: "5s" } }).lease, { enabled: true, ttl: 5000, margin: 1000 });
  });

  it("lease config - a bad field fails naming it", () => {
    for (const [input, field] of [
      [{ lease: { ttl: "soon" } }, "lease.ttl"],
      [{ lease: { ttl: "3s", margin: "2s" } }, "lease.margin"],
      [{ lease: { ttl: "3s", margin: 0 } }, "lease.margin"],
      [{ lease: { enabled: "yes" } }, "lease.enabled"],
      [{ lease: { ttl: "3s", extra: 1 } }, "lease"],
    ] as const) {
      assert.throws(
        () => parseConfig(input),
        (err: unknown) => err instanceof ConfigError && err.issues.some((i) => i.startsWith(field)),
        `${JSON.stringify(input)} names ${field}`,
      );
    }
  });
});
