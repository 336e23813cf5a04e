import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Snapshot, decode, type CatalogInstance } from "roster-schemas";
import { SNAPSHOT_PAGE_BUDGET, SnapshotPages, type SnapshotSource } from "../../src/adapters/nats/snapshot-pages.js";

/** A service view as the memory holds it (records by id), for the page cache. */
interface ServiceView {
  known: boolean;
  revision: number;
  instances: CatalogInstance[];
}
const source = (view: (service: string) => ServiceView, onRead?: () => void): SnapshotSource => ({
  serviceRevision: (s) => {
    const v = view(s);
    return { known: v.known, revision: v.revision };
  },
  instancesOf: (s) => {
    onRead?.();
    const v = view(s);
    return v.known ? new Map(v.instances.map((i) => [i.id, i])) : undefined;
  },
});

/** Every page of the current revision, decoded. */
function allPages(sp: SnapshotPages, service: string): Snapshot[] {
  const first = decode(Snapshot, sp.page(service, 0));
  assert.ok(first.ok, first.ok ? "" : first.error);
  const out = [first.value];
  for (let p = 1; p < first.value.pages; p++) {
    const d = decode(Snapshot, sp.page(service, p, first.value.revision));
    assert.ok(d.ok, d.ok ? "" : d.error);
    out.push(d.value);
  }
  return out;
}

function instance(i: number, metaBytes = 300): CatalogInstance {
  return {
    id: `i-${String(i).padStart(5, "0")}`,
    service: "big",
    host: `h-${i % 7}`,
    address: "10.0.0.1",
    port: 8000 + (i % 1000),
    tags: ["a", "b"],
    meta: { blob: "x".repeat(metaBytes) },
    weight: 100,
    status: "passing",
    checks: [],
    epoch: 1,
    registeredAt: 1,
    updatedAt: 1,
  };
}

describe("snapshot pages", () => {
  it("snapshot pages - a small service is one page", () => {
    const list = [instance(1), instance(2)];
    const pages = allPages(new SnapshotPages(source(() => ({ known: true, revision: 3, instances: list }))), "big");
    assert.equal(pages.length, 1);
    assert.deepEqual(pages[0]!.instances, list);
  });

  it("snapshot pages - pages stay under the budget, keep id order and lose nothing, whatever order the memory holds", () => {
    const list = Array.from({ length: 2000 }, (_, i) => instance(i));
    const shuffled = [...list].sort((a, b) => (a.port % 7) - (b.port % 7) || b.id.localeCompare(a.id));
    const sp = new SnapshotPages(source(() => ({ known: true, revision: 9, instances: shuffled })));
    const pages = allPages(sp, "big");
    assert.ok(pages.length > 1);
    assert.deepEqual(pages.flatMap((p) => p.instances), list);
    for (let p = 0; p < pages.length; p++) assert.ok(sp.page("big", p).byteLength <= SNAPSHOT_PAGE_BUDGET + 4096);
    const again = allPages(new SnapshotPages(source(() => ({ known: true, revision: 9, instances: list }))), "big");
    assert.deepEqual(again, pages, "deterministic: another replica cuts the same pages");
  });

  it("snapshot pages - after one instance changed, the next revision encodes that instance only; added and removed instances land in order", () => {
    let view: ServiceView = { known: true, revision: 1, instances: Array.from({ length: 2000 }, (_, i) => instance(i * 2)) };
    const sp = new SnapshotPages(source(() => view));
    allPages(sp, "big");
    assert.equal(sp.instancesEncoded, 2000);
    const changed = { ...view.instances[500]!, status: "critical" as const };
    view = { known: true, revision: 2, instances: view.instances.map((i, k) => (k === 500 ? changed : i)) };
    const two = allPages(sp, "big");
    assert.equal(sp.instancesEncoded, 2001, "one change, one encode");
    assert.equal(two.flatMap((p) => p.instances).find((i) => i.id === changed.id)?.status, "critical");
    // One added between two others, one removed.
    view = { known: true, revision: 3, instances: [...view.instances.filter((i) => i.id !== instance(0).id), instance(777)] };
    const three = allPages(sp, "big");
    assert.equal(sp.instancesEncoded, 2002);
    const ids = three.flatMap((p) => p.instances).map((i) => i.id);
    assert.equal(ids.length, 2000);
    assert.deepEqual(ids, [...ids].sort((a, b) => a.localeCompare(b)));
    assert.ok(ids.includes(instance(777).id) && !ids.includes(instance(0).id));
    assert.equal(three[0]!.revision, 3);
  });

  it("snapshot pages - every encoded page decodes, carries the revision and the page count; bytes are cached per revision", () => {
    let view: ServiceView = { known: true, revision: 42, instances: Array.from({ length: 1500 }, (_, i) => instance(i)) };
    const sp = new SnapshotPages(source(() => view));
    const first = decode(Snapshot, sp.page("big", 0));
    assert.ok(first.ok);
    const pages = first.value.pages;
    assert.ok(pages > 1);
    const all: CatalogInstance[] = [];
    for (let p = 0; p < pages; p++) {
      const d = decode(Snapshot, sp.page("big", p));
      assert.ok(d.ok, d.ok ? "" : d.error);
      assert.equal(d.value.revision, 42);
      assert.equal(d.value.page, p);
      assert.equal(d.value.pages, pages);
      all.push(...d.value.instances);
    }
    assert.equal(all.length, 1500);
    assert.equal(sp.page("big", 1), sp.page("big", 1), "same bytes while the revision holds");
    const past = decode(Snapshot, sp.page("big", pages + 3));
    assert.ok(past.ok);
    assert.deepEqual(past.value.instances, []);
    view = { ...view, revision: 43, instances: view.instances.slice(0, 10) };
    const after = decode(Snapshot, sp.page("big", 0));
    assert.ok(after.ok);
    assert.equal(after.value.revision, 43);
    assert.equal(after.value.pages, 1);
  });

  it("snapshot pages - unknown services are answered but never cached (hostile names cannot grow memory)", () => {
    const sp = new SnapshotPages(source((service) => (service === "known" ? { known: true, revision: 1, instances: [] } : { known: false, revision: 0, instances: [] })));
    for (let i = 0; i < 1000; i++) {
      const d = decode(Snapshot, sp.page(`made-up-${i}`, 0));
      assert.ok(d.ok);
      assert.equal(d.value.known, false);
    }
    sp.page("known", 0);
    assert.equal(sp.cachedServices, 1);
  });

  it("snapshot pages - the previous revision's pages stay available to a client paging through it; a hit does not rebuild the view", () => {
    let view: ServiceView = { known: true, revision: 10, instances: Array.from({ length: 1500 }, (_, i) => instance(i)) };
    let views = 0;
    const sp = new SnapshotPages(source(() => view, () => views++));
    const p0 = decode(Snapshot, sp.page("big", 0));
    assert.ok(p0.ok && p0.value.pages > 1);
    for (let i = 0; i < 50; i++) sp.page("big", i % p0.value.pages);
    assert.equal(sp.encodes, 1, "encoded once for the revision, however many ask");
    assert.equal(views, 1, "cache hits read the revision only");
    view = { ...view, revision: 11, instances: view.instances.slice(1) };
    const at10 = decode(Snapshot, sp.page("big", 1, 10));
    assert.ok(at10.ok);
    assert.equal(at10.value.revision, 10, "page 1 of the revision the client holds, though 11 is out");
    assert.equal(decode(Snapshot, sp.page("big", 0)).ok, true); // encodes 11; 10 becomes the previous
    assert.equal((decode(Snapshot, sp.page("big", 2, 10)) as { value: Snapshot }).value.revision, 10);
    view = { ...view, revision: 12, instances: view.instances.slice(1) };
    assert.equal(decode(Snapshot, sp.page("big", 0)).ok, true);
    const pinned = decode(Snapshot, sp.page("big", 1, 11));
    assert.ok(pinned.ok);
    assert.equal(pinned.value.revision, 11, "page 1 of the revision the client holds");
    const unknown = decode(Snapshot, sp.page("big", 1, 5));
    assert.ok(unknown.ok);
    assert.equal(unknown.value.revision, 12, "a revision no longer held: the current one (the client starts over)");
  });
});
