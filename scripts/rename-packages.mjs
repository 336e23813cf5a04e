#!/usr/bin/env node
// The mechanical rename of Roster's packages from the @roster scope to unscoped roster-* names
// (npm: `roster` is someone else's package, and nobody could confirm who holds the @roster scope;
// every roster-* name below was free on the registry when chosen). Rewrites every tracked text
// file (sources, tests, docs, package.json files, package-lock.json) and re-points the workspace
// links in node_modules when it exists. Idempotent: run it again after merging a branch that added
// files importing the old names.
//   node scripts/rename-packages.mjs          rewrite
//   node scripts/rename-packages.mjs --check  exit 1 if an old name is left
import { execFileSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const RENAMES = {
  "@roster/schemas": "roster-schemas",
  "@roster/runtime": "roster-runtime",
  "@roster/agent": "roster-agent",
  "@roster/registry": "roster-registry",
  "@roster/gateway-client": "roster-gateway-client",
  "@roster/cli": "roster-cli",
  "@roster/testkit": "roster-testkit",
};
// Longest first ("gateway-client" before a shorter name could match its prefix); a name must end
// there (so "@roster/cli" does not match inside "@roster/client-x").
const OLD = new RegExp(`@roster/(${Object.keys(RENAMES).map((n) => n.slice("@roster/".length)).sort((a, b) => b.length - a.length).join("|")})(?![A-Za-z0-9_-])`, "g");
const SELF = relative(root, new URL(import.meta.url).pathname);

const files = execFileSync("git", ["ls-files", "-z"], { cwd: root, encoding: "utf8" }).split("\0").filter((f) => f && f !== SELF);
const check = process.argv.includes("--check");
let changed = 0;
for (const f of files) {
  const path = join(root, f);
  if (!existsSync(path) || lstatSync(path).isSymbolicLink()) continue;
  const buf = readFileSync(path);
  if (buf.includes(0)) continue; // binary
  const text = buf.toString("utf8");
  const next = text.replace(OLD, (m) => RENAMES[m]);
  if (next === text) continue;
  changed++;
  if (check) console.error(`${f}: still names ${[...new Set(text.match(OLD))].join(", ")}`);
  else writeFileSync(path, next);
}
if (check) process.exit(changed ? 1 : 0);

// node_modules: the workspace links under the new names (what `npm install` would make).
const nm = join(root, "node_modules");
if (existsSync(nm)) {
  const { workspaces } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  for (const dir of workspaces) {
    const { name } = JSON.parse(readFileSync(join(root, dir, "package.json"), "utf8"));
    const link = join(nm, name);
    const target = relative(join(link, ".."), join(root, dir));
    if (existsSync(link) && lstatSync(link).isSymbolicLink() && readlinkSync(link) === target) continue;
    mkdirSync(join(link, ".."), { recursive: true });
    rmSync(link, { recursive: true, force: true });
    symlinkSync(target, link);
  }
  rmSync(join(nm, "@roster"), { recursive: true, force: true });
}
console.log(`renamed in ${changed} file(s)`);
