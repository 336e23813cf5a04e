import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { lstat, mkdtemp, readFile, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { NatsServer, waitFor } from "roster-testkit";
import { CatalogFollower } from "../../src/adapters/mirror.js";
import { writeFileSecurely } from "../../src/adapters/lkg-file.js";
import { FakeRegistry, makeInstance } from "./helpers.js";

describe("last-known-good file", () => {
  let nats: NatsServer;
  let dir: string;
  before(async () => {
    nats = await NatsServer.start({ jetstream: false });
    dir = await mkdtemp(join(tmpdir(), "roster-lkg-"));
  });
  after(async () => {
    await nats.close();
    await rm(dir, { recursive: true, force: true });
  });

  test("lkg file - a symlink planted at the old predictable temp name is not followed; the file is 0600", async () => {
    const file = join(dir, "a", "catalog.json");
    const victim = join(dir, "victim.txt");
    await writeFile(victim, "precious\n");
    const { mkdir } = await import("node:fs/promises");
    await mkdir(join(dir, "a"), { recursive: true });
    // The name the gateway used to write through (`<file>.<pid>.tmp`), planted by a neighbour.
    await symlink(victim, `${file}.${process.pid}.tmp`);
    const reg = await FakeRegistry.start(nats.url);
    const nc = await connect({ servers: nats.url });
    const mirror = new CatalogFollower({ presenceIntervalMs: 200, lastKnownGoodFile: file, lastKnownGoodDebounceMs: 20 });
    mirror.attach(nc);
    try {
      reg.put(makeInstance("lkgsec", "s1", 1001));
      await mirror.waitReady("lkgsec");
      await waitFor(async () => (await readFile(file, "utf8").catch(() => "")).includes("s1"), { timeoutMs: 5000, what: "file written" });
    } finally {
      await mirror.close();
      await nc.close();
      await reg.close();
    }
    assert.equal(await readFile(victim, "utf8"), "precious\n", "the symlink's target is untouched");
    const st = await lstat(file);
    assert.equal(st.isFile(), true);
    assert.equal(st.mode & 0o777, 0o600);
    // No temp file left behind (only the planted link remains).
    const left = (await readdir(join(dir, "a"))).filter((n) => n !== "catalog.json");
    assert.deepEqual(left, [`catalog.json.${process.pid}.tmp`]);
  });

  test("lkg file - a symlink at the file itself is replaced, never written through", async () => {
    const file = join(dir, "b.json");
    const victim = join(dir, "victim-b.txt");
    await writeFile(victim, "keep\n");
    await symlink(victim, file);
    await writeFileSecurely(file, '{"v":1}');
    assert.equal(await readFile(victim, "utf8"), "keep\n");
    assert.equal((await lstat(file)).isSymbolicLink(), false);
    assert.equal(await readFile(file, "utf8"), '{"v":1}');
    assert.equal((await lstat(file)).mode & 0o777, 0o600);
  });

  test("lkg file - an existing file is replaced with mode 0600 even when it was 0644", async () => {
    const file = join(dir, "c.json");
    await writeFile(file, "old", { mode: 0o644 });
    await writeFileSecurely(file, "new");
    assert.equal(await readFile(file, "utf8"), "new");
    assert.equal((await lstat(file)).mode & 0o777, 0o600);
  });
});
