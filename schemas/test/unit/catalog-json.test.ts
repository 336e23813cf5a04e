import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { CatalogInstance, CheckState, catalogInstanceJson, type CatalogInstance as Instance } from "../../src/index.js";

const name = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_-]{0,20}$/);
const text = fc.string({ unit: "binary", maxLength: 20 }); // quotes, backslashes, control characters, non-BMP
const check = fc.record(
  { id: name, type: fc.constantFrom("http", "tcp", "exec", "ttl", "grpc" as const), status: fc.constantFrom("passing", "warning", "critical" as const), output: text, since: fc.nat() },
  { requiredKeys: ["id", "type", "status", "since"] },
);
const instance: fc.Arbitrary<Instance> = fc.record(
  {
    id: name, service: name, host: name, address: fc.stringMatching(/^[^\s]{1,30}$/), port: fc.integer({ min: 1, max: 65535 }), zone: name,
    tags: fc.array(text.filter((t) => t.length > 0), { maxLength: 4 }), meta: fc.dictionary(text.filter((k) => k.length > 0), text, { maxKeys: 4 }),
    weight: fc.integer({ min: 1, max: 1000 }), status: fc.constantFrom("passing", "warning", "critical", "draining" as const), reason: fc.constant("agent-lost" as const),
    checks: fc.array(check, { maxLength: 3 }), epoch: fc.nat(), registeredAt: fc.nat(), updatedAt: fc.nat(),
  },
  { requiredKeys: ["id", "service", "host", "address", "port", "tags", "meta", "weight", "status", "checks", "epoch", "registeredAt", "updatedAt"] },
);

describe("catalog record JSON", () => {
  it("catalog-json - writes every field of the schema, in its order (a new field fails here until catalogInstanceJson writes it)", () => {
    const full: Instance = {
      id: "i", service: "s", host: "h", address: "a", port: 1, zone: "z", tags: ["t"], meta: { k: "v" }, weight: 1, status: "critical", reason: "agent-lost",
      checks: [{ id: "c", type: "http", status: "critical", output: "o", since: 1 }], epoch: 1, registeredAt: 1, updatedAt: 1,
    };
    const back = JSON.parse(catalogInstanceJson(full)) as Instance;
    assert.deepEqual(Object.keys(back), Object.keys(CatalogInstance.shape));
    assert.deepEqual(Object.keys(back.checks[0]!), Object.keys(CheckState.shape));
    assert.deepEqual(back, full);
  });

  it("catalog-json - the same value as JSON.stringify for any valid record (property)", () => {
    fc.assert(
      fc.property(instance, (r) => {
        assert.ok(CatalogInstance.safeParse(r).success);
        const json = catalogInstanceJson(r);
        assert.deepEqual(JSON.parse(json), JSON.parse(JSON.stringify(r)));
        assert.equal(Buffer.byteLength(json), Buffer.byteLength(JSON.stringify(r)));
      }),
      { numRuns: 500 },
    );
  });
});
