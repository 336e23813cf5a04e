#!/usr/bin/env node
// Runs the compiled tests with node's own test runner.
//   node scripts/run-tests.mjs            every test (unit, integration, end-to-end)
//   node scripts/run-tests.mjs --unit     only */test/unit (fast, no nats-server)
//   node scripts/run-tests.mjs agent      only files whose path contains "agent"
// Tests are compiled by `tsc -b` to <package>/dist/test and dist-test/.
import { spawn } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const args = process.argv.slice(2);
const unitOnly = args.includes("--unit");
const filters = args.filter((a) => !a.startsWith("--"));

function walk(dir, out = []) {
  let entries = [];
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith(".test.js")) out.push(p);
  }
  return out;
}

const roots = ["schemas", "runtime", "agent", "registry", "gateway-client", "cli", "test/kit"].map((p) => join(root, p, "dist", "test"));
roots.push(join(root, "dist-test"));
let files = roots.flatMap((r) => walk(r)).map((f) => relative(root, f)).sort();
if (unitOnly) files = files.filter((f) => f.includes("/unit/"));
if (filters.length) files = files.filter((f) => filters.some((x) => f.includes(x)));
// Unit tests first: they fail fast and cheaply.
files.sort((a, b) => Number(!a.includes("/unit/")) - Number(!b.includes("/unit/")) || a.localeCompare(b));
if (files.length === 0) {
  console.error("no test files found: run `npm run build` first");
  process.exit(1);
}
const concurrency = process.env.ROSTER_TEST_CONCURRENCY ?? "2";
// A test that hangs (a setup waiting on something that never comes) fails after this instead of
// holding CI until its time limit.
const testTimeoutMs = process.env.ROSTER_TEST_TIMEOUT_MS ?? "300000";
const child = spawn(
  process.execPath,
  ["--test", `--test-concurrency=${concurrency}`, `--test-timeout=${testTimeoutMs}`, "--test-reporter=spec", ...files],
  { cwd: root, stdio: "inherit", env: { ...process.env, NODE_ENV: "test" } },
);
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => child.kill(sig));
