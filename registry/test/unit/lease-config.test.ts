import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseConfig, registryIdentity } from "../../src/config.js";
import { ConfigError } from "../../src/errors.js";

describe("registry lease config", () => {
  it("lease config - kvReplicas auto by default; the registry id is its host and fixed port, random on port 0, or as configured", () => {
    assert.equal(parseConfig({}).kvReplicas, "auto");
    assert.equal(parseConfig({ kvReplicas: 3 }).kvReplicas, 3);
    const random = () => "rnd";
    assert.equal(registryIdentity(parseConfig({ http: { listen: "10.0.0.5:7700" } }), "node a", random), "node-a-7700");
    assert.equal(registryIdentity(parseConfig({ http: { listen: "127.0.0.1:0" } }), "node-a", random), "rnd");
    assert.equal(registryIdentity(parseConfig({ registryId: "reg-1", http: { listen: "127.0.0.1:0" } }), "node-a", random), "reg-1");
    assert.throws(() => parseConfig({ registryId: "a b" }), (e: unknown) => e instanceof ConfigError && /registryId/.test(e.message));
    assert.throws(() => parseConfig({ kvReplicas: "three" }), (e: unknown) => e instanceof ConfigError && /kvReplicas/.test(e.message));
  });

  it("lease config - on by default, ttl 3 s, margin 1 s; off only when asked", () => {
    assert.deepEqual(parseConfig({}).lease, { enabled: true, ttl: 3000, margin: 1000 });
    assert.deepEqual(parseConfig({ lease: {} }).lease, { enabled: true, ttl: 3000, margin: 1000 });
    assert.equal(parseConfig({ lease: { enabled: false } }).lease.enabled, false);
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
