// The packages as a new user gets them: `npm pack` of every published workspace (prepack copies
// the LICENSE in), the tarballs' contents and metadata checked, then an `npm install` of the
// tarballs into an empty folder outside the repository (dependencies from npm's cache, else the
// registry), each installed binary's --version and --help, and a registry and an agent started from
// the installed packages against a real nats-server until an instance is passing.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createServer, type Server } from "node:http";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { ChildProc, NatsServer, freePort, waitFor } from "roster-testkit";

const run = promisify(execFile);
const root = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..");

interface Manifest {
  name: string;
  version: string;
  private?: boolean;
  description?: string;
  keywords?: string[];
  license?: string;
  repository?: { type: string; url: string; directory: string };
  types?: string;
  exports?: Record<string, unknown>;
  files?: string[];
  bin?: Record<string, string>;
  engines?: { node?: string };
  dependencies?: Record<string, string>;
}

async function workspaces(): Promise<{ dir: string; pkg: Manifest }[]> {
  const rootPkg = JSON.parse(await readFile(join(root, "package.json"), "utf8")) as { workspaces: string[] };
  const all = await Promise.all(rootPkg.workspaces.map(async (dir) => ({ dir, pkg: JSON.parse(await readFile(join(root, dir, "package.json"), "utf8")) as Manifest })));
  return all.filter((w) => !w.pkg.private);
}

async function npm(args: string[], cwd: string): Promise<string> {
  // npm_config_* of an outer `npm test` (workspace, prefix...) must not leak into the inner npm.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith("npm_")));
  const { stdout } = await run("npm", args, { cwd, env: { ...env, NODE_ENV: "production" }, maxBuffer: 64 * 1024 * 1024, timeout: 110_000 });
  return stdout;
}

describe("packages (npm pack, install from the tarballs, run)", { timeout: 180_000 }, () => {
  let dir: string;
  let app: string;
  let published: { dir: string; pkg: Manifest }[];
  const tarballs = new Map<string, { file: string; files: string[] }>();
  let nats: NatsServer | undefined;
  let upstream: Server | undefined;
  const procs: ChildProc[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "roster-packages-"));
    app = join(dir, "app");
    await mkdir(app);
    published = await workspaces();
    // One npm for every workspace: prepack of each, tarballs into dir.
    const out = await npm(["pack", "--json", "--pack-destination", dir, ...published.flatMap((w) => ["-w", w.dir])], root);
    for (const t of JSON.parse(out) as { name: string; filename: string; files: { path: string }[] }[]) {
      tarballs.set(t.name, { file: join(dir, t.filename), files: t.files.map((f) => f.path) });
    }
  });

  after(async () => {
    for (const p of procs) await p.stop(5000);
    await nats?.close();
    upstream?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("packages - every published package names itself, ships README, LICENSE, types and the sources of its maps", async () => {
    assert.deepEqual([...tarballs.keys()].sort(), published.map((w) => w.pkg.name).sort());
    const license = await readFile(join(root, "LICENSE"), "utf8");
    assert.match(license, /Apache License\s+Version 2\.0, January 2004/);
    for (const { dir: wdir, pkg } of published) {
      const files = new Set(tarballs.get(pkg.name)!.files);
      for (const f of ["README.md", "LICENSE", "package.json"]) assert.ok(files.has(f), `${pkg.name}: ${f} missing from the tarball`);
      assert.equal(await readFile(join(root, wdir, "LICENSE"), "utf8"), license, `${pkg.name}: LICENSE is the repository's`);
      assert.equal(pkg.license, "Apache-2.0");
      assert.ok((pkg.description ?? "").length > 20, `${pkg.name}: description`);
      assert.ok((pkg.keywords ?? []).includes("service-discovery"), `${pkg.name}: keywords`);
      assert.equal(pkg.repository?.directory, wdir, `${pkg.name}: repository.directory`);
      assert.ok(pkg.types && files.has(pkg.types.replace(/^\.\//, "")), `${pkg.name}: types ${pkg.types} not in the tarball`);
      assert.ok(pkg.exports?.["."], `${pkg.name}: exports "."`);
      assert.ok(pkg.files?.length, `${pkg.name}: files`);
      assert.ok(pkg.engines?.node, `${pkg.name}: engines.node`);
      // `npx <package>` runs the package's only binary: one per package, its file shipped.
      const bins = Object.entries(pkg.bin ?? {});
      assert.ok(bins.length <= 1, `${pkg.name}: more than one bin makes npx ambiguous`);
      for (const [, file] of bins) assert.ok(files.has(file), `${pkg.name}: bin ${file} not in the tarball`);
      // A source map must not point at a file that is not there.
      for (const f of files) {
        if (!f.endsWith(".map")) continue;
        const map = JSON.parse(await readFile(join(root, wdir, f), "utf8")) as { sources: string[] };
        for (const s of map.sources) {
          const target = join(f, "..", s);
          assert.ok(files.has(target), `${pkg.name}: ${f} points at ${target}, which is not shipped`);
        }
      }
      for (const f of files) assert.doesNotMatch(f, /(^|\/)(test|dist\/test)\//, `${pkg.name}: ships a test file ${f}`);
    }
  });

  it("packages - install from the tarballs into an empty folder; every binary answers --version and --help", async () => {
    await writeFile(join(app, "package.json"), JSON.stringify({ name: "roster-install-check", private: true }));
    // Every tarball in one install: a package's dependency on another Roster package is met by its
    // tarball, the rest comes from npm's cache (or the registry when the cache lacks it).
    await npm(["install", "--prefer-offline", "--no-audit", "--no-fund", "--omit=dev", ...[...tarballs.values()].map((t) => t.file)], app);
    for (const { pkg } of published) {
      for (const name of Object.keys(pkg.bin ?? {})) {
        const bin = join(app, "node_modules", ".bin", name);
        const v = await run(process.execPath, [bin, "--version"]);
        assert.equal(v.stdout, `${name} ${pkg.version} (node ${process.version})\n`);
        const h = await run(process.execPath, [bin, "--help"]);
        assert.match(h.stdout, new RegExp(`^usage: ${name} `), `${name} --help`);
        assert.match(h.stdout, /--version/);
      }
    }
    // The library entry points load from the installed copies, not the repository.
    const probe = join(app, "probe.mjs");
    await writeFile(probe, `for (const m of ${JSON.stringify(published.map((w) => w.pkg.name))}) { const url = import.meta.resolve(m); if (!url.includes("/app/node_modules/")) throw new Error(m + " resolved to " + url); await import(m); }\n`);
    await run(process.execPath, [probe], { cwd: app });
  });

  it("packages - a registry and an agent from the installed packages bring an instance to passing", async () => {
    nats = await NatsServer.start();
    upstream = createServer((_req, res) => res.end("ok"));
    const upstreamPort = await freePort();
    await new Promise<void>((ok) => upstream!.listen(upstreamPort, "127.0.0.1", ok));
    const http = `127.0.0.1:${await freePort()}`;
    const env = { ...process.env, ROSTER_LOG_PRETTY: "0" };
    const bin = (name: string) => join(app, "node_modules", ".bin", name);
    const registryConfig = join(dir, "registry.yaml");
    await writeFile(registryConfig, "tickInterval: 100ms\npresenceInterval: 200ms\n");
    const registry = new ChildProc(process.execPath, [bin("roster-registry"), "--nats", nats.url, "--http", http, "--config", registryConfig], { cwd: app, env });
    procs.push(registry);
    const agentConfig = join(dir, "agent.yaml");
    await writeFile(
      agentConfig,
      [
        "host: { id: packaged-host }",
        "heartbeat: { interval: 200ms }",
        "services:",
        `  - { name: packaged, id: packaged-1, address: 127.0.0.1, port: ${upstreamPort}, checks: [{ type: http, path: /, interval: 200ms, timeout: 1s }] }`,
        "",
      ].join("\n"),
    );
    const agent = new ChildProc(process.execPath, [bin("roster-agent"), "--config", agentConfig, "--nats", nats.url, "--api", "127.0.0.1:0"], { cwd: app, env });
    procs.push(agent);
    await waitFor(
      async () => {
        const res = await fetch(`http://${http}/v1/services/packaged/instances?status=passing`).catch(() => null);
        if (res?.status !== 200) return false;
        const body = (await res.json()) as { instances?: { id: string }[] } | { id: string }[];
        const list = Array.isArray(body) ? body : (body.instances ?? []);
        return list.some((i) => i.id === "packaged-1");
      },
      { timeoutMs: 30_000, what: `packaged-1 passing in the installed registry\nregistry: ${registry.output.slice(-1500)}\nagent: ${agent.output.slice(-1500)}` },
    );
    // The installed roster CLI reads the same catalog.
    const { stdout } = await run(process.execPath, [bin("roster"), "--registry", `http://${http}`, "--json", "instances", "packaged"]);
    assert.match(stdout, /packaged-1/);
    const files = await readdir(join(app, "node_modules"));
    assert.ok(files.length > 0);
  });
});
