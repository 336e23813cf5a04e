#!/usr/bin/env node
// The installed size of each published package with its production dependencies, as a user
// gets it: `npm pack` of every workspace, then for each package an `npm install --omit=dev` of its
// tarball (and the tarballs of the Roster packages it needs) into an empty folder, and the sum of
// the file sizes under node_modules/ (apparent size, so the figure does not depend on the file
// system's block size). Optional dependencies (pino-pretty) are counted as npm installs them.
//   npx tsc -b && node scripts/package-sizes.mjs
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, lstatSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith("npm_")));
const { workspaces } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const pkgs = workspaces.map((dir) => ({ dir, pkg: JSON.parse(readFileSync(join(root, dir, "package.json"), "utf8")) })).filter((w) => !w.pkg.private);
const dir = mkdtempSync(join(tmpdir(), "roster-sizes-"));

function bytesUnder(p) {
  let n = 0;
  for (const name of readdirSync(p)) {
    const f = join(p, name);
    const st = lstatSync(f);
    n += st.isDirectory() ? bytesUnder(f) : st.size;
  }
  return n;
}

try {
  const packed = JSON.parse(execFileSync("npm", ["pack", "--json", "--pack-destination", dir, ...pkgs.flatMap((w) => ["-w", w.dir])], { cwd: root, env, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }));
  const tarball = new Map(packed.map((t) => [t.name, { file: join(dir, t.filename), size: t.size, unpacked: t.unpackedSize }]));
  const byName = new Map(pkgs.map((w) => [w.pkg.name, w.pkg]));
  // The Roster packages a package needs, itself included (their tarballs stand in for the registry).
  const closure = (name, out = new Set()) => {
    if (out.has(name)) return out;
    out.add(name);
    for (const dep of Object.keys(byName.get(name)?.dependencies ?? {})) if (byName.has(dep)) closure(dep, out);
    return out;
  };
  const rows = [];
  for (const { pkg } of pkgs) {
    const app = mkdtempSync(join(dir, "app-"));
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "size-probe", private: true }));
    execFileSync("npm", ["install", "--omit=dev", "--prefer-offline", "--no-audit", "--no-fund", ...[...closure(pkg.name)].map((n) => tarball.get(n).file)], { cwd: app, env, stdio: "ignore" });
    const total = bytesUnder(join(app, "node_modules"));
    const count = readdirSync(join(app, "node_modules")).flatMap((n) => (n.startsWith("@") ? readdirSync(join(app, "node_modules", n)) : n.startsWith(".") ? [] : [n])).length;
    rows.push({ name: pkg.name, tarballKB: Math.round(tarball.get(pkg.name).size / 1024), unpackedKB: Math.round(tarball.get(pkg.name).unpacked / 1024), installedMB: +(total / 1e6).toFixed(1), packages: count });
  }
  console.log(`node ${process.version}, npm ${execFileSync("npm", ["--version"], { env, encoding: "utf8" }).trim()}`);
  console.log("| package | tarball | unpacked | installed with production dependencies | packages in node_modules |");
  console.log("| --- | ---: | ---: | ---: | ---: |");
  for (const r of rows) console.log(`| \`${r.name}\` | ${r.tarballKB} kB | ${r.unpackedKB} kB | ${r.installedMB} MB | ${r.packages} |`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
