// Markdown tables and the machine header every benchmark prints.
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { cpus, loadavg, release, totalmem } from "node:os";
import { fileURLToPath } from "node:url";

const RESULTS_DIR = fileURLToPath(new URL("../results/", import.meta.url));

/** `nats-server --version` of the binary the test kit starts (NATS_SERVER_BIN or PATH). */
export function natsServerVersion() {
  const r = spawnSync(process.env.NATS_SERVER_BIN ?? "nats-server", ["--version"], { encoding: "utf8" });
  return r.stdout?.trim().replace(/^nats-server:\s*/, "") || "unknown";
}

/** A GitHub-flavoured markdown table; numbers right-aligned. */
export function markdownTable(headers, rows) {
  const cells = rows.map((r) => r.map((c) => String(c)));
  const numeric = headers.map((_, i) => cells.length > 0 && cells.some((r) => (r[i] ?? "") !== "") && cells.every((r) => /^-?[\d.,]+( ?[a-zA-Z%/]+)?$|^n\/a$|^$/.test(r[i] ?? "")));
  const line = (r) => `| ${r.join(" | ")} |`;
  const sep = `| ${headers.map((_, i) => (numeric[i] ? "---:" : "---")).join(" | ")} |`;
  return [line(headers), sep, ...cells.map(line)].join("\n");
}

/** The machine, Node version and date, as recorded next to every figure. */
export function machineInfo() {
  const cpu = cpus();
  return {
    cpu: cpu[0]?.model?.trim() ?? "unknown",
    cores: cpu.length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    os: `${process.platform} ${release()}`,
    node: process.version,
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    loadavg: loadavg().map((l) => l.toFixed(2)).join(" "),
    natsServer: natsServerVersion(),
  };
}

/**
 * Prints a benchmark's result to stdout as markdown: a title, the machine, the parameters,
 * then each table with its caption, then notes.
 */
export function printReport({ title, command, params = {}, tables = [], notes = [], figures = {}, name }) {
  const m = machineInfo();
  writeResult(name, { title, machine: m, command, params, figures, tables, notes });
  const out = [];
  out.push(`### ${title}`, "");
  if (command) out.push(`Command: \`${command}\``, "");
  out.push(
    markdownTable(
      ["machine", "cores", "memory", "os", "node", "nats-server", "date (UTC)", "load avg at end (1/5/15 min)"],
      [[m.cpu, m.cores, `${m.memoryGiB} GiB`, m.os, m.node, m.natsServer, m.date, m.loadavg]],
    ),
    "",
  );
  const p = Object.entries(params);
  if (p.length) out.push(`Parameters: ${p.map(([k, v]) => `${k}=${v}`).join(", ")}`, "");
  for (const t of tables) {
    if (t.caption) out.push(`**${t.caption}**`, "");
    out.push(markdownTable(t.headers, t.rows), "");
  }
  for (const n of notes) out.push(`- ${n}`);
  if (notes.length) out.push("");
  process.stdout.write(out.join("\n") + "\n");
}

/**
 * Writes bench/results/<name>.json (gitignored): machine, versions, command, parameters,
 * figures and tables. The name is the scenario's (BENCH_SCENARIO, set by run-all), else the
 * script's file name.
 */
export function writeResult(name, result) {
  const n = name ?? process.env.BENCH_SCENARIO ?? basename(process.argv[1] ?? "bench", ".mjs");
  try {
    mkdirSync(RESULTS_DIR, { recursive: true });
    const file = join(RESULTS_DIR, `${n}.json`);
    writeFileSync(file, JSON.stringify({ scenario: n, ...result }, null, 2) + "\n");
    process.stderr.write(`results: ${file}\n`);
  } catch (err) {
    process.stderr.write(`results: could not write ${n}.json: ${err?.message ?? err}\n`);
  }
}
