// CPU and memory of another process, read from /proc (Linux only).
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";

let clkTck = 0;
function ticksPerSecond() {
  if (!clkTck) {
    const r = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" });
    clkTck = Number(r.stdout?.trim()) || 100;
  }
  return clkTck;
}

/** utime + stime of `pid` in seconds (fields 14 and 15 of /proc/<pid>/stat); null if gone. */
export function cpuSeconds(pid) {
  let text;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // The command name (field 2) may contain spaces: split after its closing parenthesis.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return (utime + stime) / ticksPerSecond();
}

/** Resident set size of `pid` in MiB (VmRSS of /proc/<pid>/status); null if gone. */
export function rssMiB(pid) {
  let text;
  try {
    text = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return null;
  }
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(text);
  return m ? Number(m[1]) / 1024 : null;
}

/**
 * Samples the CPU (% of one core since the previous sample) and RSS of a process every
 * `intervalMs`. `mark()` starts a window; `window()` returns the samples since the mark.
 */
export class ProcSampler {
  constructor(pid, intervalMs = 1000) {
    this.pid = pid;
    this.intervalMs = intervalMs;
    this.samples = [];
    this.markIndex = 0;
    this.last = { t: performance.now(), cpu: cpuSeconds(pid) ?? 0 };
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  sample() {
    const t = performance.now();
    const cpu = cpuSeconds(this.pid);
    const rss = rssMiB(this.pid);
    if (cpu === null || rss === null) return;
    const cpuPct = ((cpu - this.last.cpu) / ((t - this.last.t) / 1000)) * 100;
    this.last = { t, cpu };
    this.samples.push({ at: Date.now(), cpuPct, rssMiB: rss });
  }

  mark() {
    this.markIndex = this.samples.length;
  }

  window() {
    return this.samples.slice(this.markIndex);
  }

  /** Total CPU seconds the process has used so far. */
  totalCpuSeconds() {
    return cpuSeconds(this.pid);
  }

  stop() {
    clearInterval(this.timer);
  }
}
