#!/usr/bin/env node
// Runs every whole-system benchmark in sequence and prints their output (markdown on
// stdout, progress on stderr), then a summary. `npm run bench` calls it.
//
//   node bench/run-all.mjs [--quick] [filter...]
//
// Runs bench/*.mjs (this file excepted) and gateway-client/bench/*.bench.mjs when present.
// --quick shortens every run (fewer trials, shorter windows) for a smoke test; a filter
// keeps only scripts whose path contains it. Each script is bounded by its own deadline,
// and by a hard limit here as well.
import { spawn } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { markdownTable } from "./lib/table.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const args = process.argv.slice(2);
const quick = args.includes("--quick");
const filters = args.filter((a) => !a.startsWith("--"));
const HARD_LIMIT_MS = 20 * 60_000;

function list(dir, test) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter(test)
    .sort()
    .map((f) => relative(root, join(dir, f)));
}

let scripts = [
  ...list(join(root, "bench"), (f) => f.endsWith(".mjs") && f !== "run-all.mjs"),
  ...list(join(root, "gateway-client", "bench"), (f) => f.endsWith(".bench.mjs")),
];
if (filters.length) scripts = scripts.filter((s) => filters.some((f) => s.includes(f)));

// Modest settings for a smoke run; a variable already set in the environment wins.
const QUICK_ENV = {
  BENCH_HOSTS: "200",
  BENCH_DURATION: "10",
  BENCH_SETTLE: "3",
  BENCH_TRIALS: "20",
  BENCH_PROFILES: "fast",
  BENCH_QUICK: "1",
};
const env = { ...process.env };
if (quick) for (const [k, v] of Object.entries(QUICK_ENV)) env[k] ??= v;

const summary = [];
let current = null;
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    current?.kill(sig);
    process.exit(130);
  });
}

process.stderr.write(`run-all: ${scripts.length} benchmark(s): ${scripts.join(", ")}${quick ? " (quick)" : ""}\n`);
for (const script of scripts) {
  process.stderr.write(`\n=== ${script} ===\n`);
  process.stdout.write(`\n<!-- ${script} -->\n`);
  const t0 = Date.now();
  const child = spawn(process.execPath, [script], { cwd: root, env, stdio: ["ignore", "inherit", "inherit"] });
  current = child;
  const timer = setTimeout(() => {
    process.stderr.write(`run-all: ${script} ran past ${HARD_LIMIT_MS / 60_000} min, killing it\n`);
    child.kill("SIGTERM");
    setTimeout(() => child.kill("SIGKILL"), 15_000).unref();
  }, HARD_LIMIT_MS);
  const { code, signal } = await new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  clearTimeout(timer);
  summary.push([script, code === 0 ? "ok" : `failed (${signal ?? `exit ${code}`})`, `${((Date.now() - t0) / 1000).toFixed(0)} s`]);
}

process.stdout.write(`\n### Benchmark runs\n\n${markdownTable(["script", "result", "time"], summary)}\n`);
process.exit(summary.every((r) => r[1] === "ok") ? 0 : 1);
