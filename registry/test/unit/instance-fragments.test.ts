import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { CatalogInstance } from "roster-schemas";
import { ServiceFragments, joinFragments, pageStarts } from "../../src/core/instance-fragments.js";

const rec = (id: string, status: CatalogInstance["status"] = "passing"): CatalogInstance => ({
  id, service: "s", host: "h", address: "10.0.0.1", port: 1, tags: [], meta: {}, weight: 1, status, checks: [], epoch: 1, registeredAt: 1, updatedAt: 1,
});
const text = (b: Uint8Array) => new TextDecoder().decode(b);

describe("instance fragments", () => {
  it("instance fragments - a record kept is not encoded again; a replaced one is; adds and deletes keep id order; an unchanged sync returns the same array", () => {
    let encoded: string[] = [];
    const f = new ServiceFragments((r) => {
      encoded.push(r.id);
      return new TextEncoder().encode(JSON.stringify({ id: r.id, status: r.status }));
    });
    const live = new Map([["b", rec("b")], ["a", rec("a")], ["d", rec("d")]]);
    const first = f.sync(live);
    assert.deepEqual(first.map((x) => x.id), ["a", "b", "d"]);
    assert.deepEqual(encoded.sort(), ["a", "b", "d"]);
    encoded = [];
    assert.equal(f.sync(live), first, "nothing changed: the same array");
    assert.deepEqual(encoded, []);
    live.set("b", rec("b", "critical")); // replaced
    live.set("c", rec("c")); // added
    live.delete("a"); // removed
    const second = f.sync(live);
    assert.deepEqual(encoded.sort(), ["b", "c"], "only what changed");
    assert.deepEqual(second.map((x) => x.id), ["b", "c", "d"]);
    assert.equal(second[2], first[2], "d kept its fragment object");
    assert.deepEqual(first.map((x) => x.id), ["a", "b", "d"], "the earlier revision's list is untouched");
    assert.match(text(second[0]!.bytes), /critical/);
    assert.equal(f.encodes, 5);
  });

  it("instance fragments - pages cut by size (a comma each), an oversized fragment alone; joined with commas", () => {
    const frag = (id: string, n: number) => ({ id, record: rec(id), bytes: new Uint8Array(n).fill(0x61), seen: 0 });
    const list = [frag("a", 4), frag("b", 4), frag("c", 4), frag("d", 20), frag("e", 1)];
    assert.deepEqual(pageStarts(list, 10), [0, 2, 3, 4]);
    assert.deepEqual(pageStarts([], 10), [0]);
    const joined = text(joinFragments(new TextEncoder().encode("["), list.slice(0, 3), new TextEncoder().encode("]")));
    assert.equal(joined, "[aaaa,aaaa,aaaa]");
  });
});
