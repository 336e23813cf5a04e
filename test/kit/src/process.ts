import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { readFileSync } from "node:fs";
import { waitFor } from "./wait.js";

/** True while the process has neither exited nor been killed. */
export function isAlive(proc: ChildProcess | null): proc is ChildProcess {
  return proc !== null && proc.exitCode === null && proc.signalCode === null;
}

/** Sends `signal`, then SIGKILL after `graceMs`, and waits for the exit. */
export async function stopProcess(proc: ChildProcess, signal: NodeJS.Signals = "SIGTERM", graceMs = 5000): Promise<void> {
  if (!isAlive(proc)) return;
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  proc.kill(signal);
  const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}

/**
 * A child process whose output is kept (last 64 KiB) for assertions and for the failure
 * message of a test.
 */
export class ChildProc {
  readonly proc: ChildProcess;
  output = "";
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(command: string, args: string[], opts: SpawnOptions = {}) {
    this.proc = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], ...opts });
    const keep = (d: Buffer) => {
      this.output = (this.output + d.toString()).slice(-65536);
      if (process.env.ROSTER_TEST_VERBOSE) process.stderr.write(d);
    };
    this.proc.stdout?.on("data", keep);
    this.proc.stderr?.on("data", keep);
    this.exited = new Promise((resolve) => this.proc.once("exit", (code, signal) => resolve({ code, signal })));
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  kill(signal: NodeJS.Signals = "SIGTERM"): void {
    if (this.alive) this.proc.kill(signal);
  }

  /** Waits until the output contains `text` (or matches the regex). */
  async waitForOutput(pattern: string | RegExp, timeoutMs = 10_000): Promise<void> {
    await waitFor(() => (typeof pattern === "string" ? this.output.includes(pattern) : pattern.test(this.output)), {
      timeoutMs,
      what: `output ${String(pattern)} from ${this.proc.spawnargs.join(" ")}; got:\n${this.output.slice(-2000)}`,
    });
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (!this.alive) return this.exited;
    this.proc.kill("SIGTERM");
    const timer = setTimeout(() => this.kill("SIGKILL"), graceMs);
    const r = await this.exited;
    clearTimeout(timer);
    return r;
  }
}

/**
 * Ends every process at once (SIGKILL), continuing first any a test stopped with SIGSTOP (a
 * stopped process would not act on it until continued), and waits until all have exited.
 * For a test's `after`: undefined entries (a `before` that failed half way) are skipped.
 */
export async function killAll(procs: ReadonlyArray<ChildProc | undefined>): Promise<void> {
  for (const p of procs) {
    if (!p?.alive) continue;
    try {
      process.kill(p.pid, "SIGCONT");
    } catch {
      // already gone
    }
    p.kill("SIGKILL");
  }
  await Promise.all(procs.map((p) => p?.exited));
}

/**
 * SIGSTOP, then (on Linux) waits until the kernel shows the process stopped (state `T` in
 * /proc/<pid>/stat): a busy process may still run for a moment after the signal, and a test that
 * acts right away (sends a request the stopped process must not answer) could race it.
 */
export async function pauseProcess(pid: number, timeoutMs = 5000): Promise<void> {
  process.kill(pid, "SIGSTOP");
  if (process.platform !== "linux") return;
  await waitFor(() => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "T";
    } catch {
      return true; // gone: nothing left to race
    }
  }, { timeoutMs, intervalMs: 5, what: `process ${pid} stopped` });
}

/** Runs a Node.js script as a real child process. */
export function spawnNode(script: string, args: string[] = [], opts: SpawnOptions = {}): ChildProc {
  return new ChildProc(process.execPath, [script, ...args], opts);
}
