// Markdown tables and the machine header every benchmark prints.
import { cpus, loadavg, release, totalmem } from "node:os";

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
  };
}

/**
 * Prints a benchmark's result to stdout as markdown: a title, the machine, the parameters,
 * then each table with its caption, then notes.
 */
export function printReport({ title, command, params = {}, tables = [], notes = [] }) {
  const m = machineInfo();
  const out = [];
  out.push(`### ${title}`, "");
  if (command) out.push(`Command: \`${command}\``, "");
  out.push(
    markdownTable(
      ["machine", "cores", "memory", "os", "node", "date (UTC)", "load avg at end (1/5/15 min)"],
      [[m.cpu, m.cores, `${m.memoryGiB} GiB`, m.os, m.node, m.date, m.loadavg]],
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
