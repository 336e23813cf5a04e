import { spawn } from "node:child_process";
import type { ExecCheckSpec } from "../../config.js";
import { truncateOutput, type CheckResult } from "../../core/check.js";
import { errorText } from "./util.js";

const OUTPUT_BYTES = 1024;

/**
 * Exec check: the command runs without a shell, in its own process group; exit 0 passing,
 * 1 warning, anything else critical. At its timeout the whole group gets SIGKILL. Output is
 * the last ~1 KiB of stdout and stderr interleaved.
 */
export function probeExec(spec: Pick<ExecCheckSpec, "command" | "cwd" | "timeoutMs">, signal?: AbortSignal): Promise<CheckResult> {
  return new Promise((resolve) => {
    const [file, ...args] = spec.command;
    let output = "";
    let settled = false;
    let killedFor: string | undefined;
    const child = spawn(file!, args, { cwd: spec.cwd, stdio: ["ignore", "pipe", "pipe"], detached: true, env: process.env });
    const keep = (d: Buffer) => {
      output = (output + d.toString("utf8")).slice(-OUTPUT_BYTES * 4);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    const killGroup = () => {
      try {
        if (child.pid) process.kill(-child.pid, "SIGKILL");
      } catch {
        child.kill("SIGKILL");
      }
    };
    const finish = (r: CheckResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onStop);
      child.stdout.destroy();
      child.stderr.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => {
      killedFor = `timeout after ${spec.timeoutMs}ms`;
      killGroup();
    }, spec.timeoutMs);
    const onStop = () => {
      killedFor = "check stopped";
      killGroup();
    };
    signal?.addEventListener("abort", onStop, { once: true });
    child.once("error", (err) => finish({ status: "critical", output: `cannot run ${file}: ${errorText(err)}` }));
    // Settle on "close" (all output read) but at most 100ms after "exit": a grandchild that
    // keeps the pipes open must not hold the check.
    let exitInfo: { code: number | null; sig: NodeJS.Signals | null } | undefined;
    const settle = () => {
      if (!exitInfo) return;
      const { code, sig } = exitInfo;
      const tail = truncateOutput(output.trim(), OUTPUT_BYTES - 64);
      if (killedFor) return finish({ status: "critical", output: tail ? `${killedFor}\n${tail}` : killedFor });
      const status = code === 0 ? "passing" : code === 1 ? "warning" : "critical";
      const note = code === null ? `killed by ${sig}` : `exit ${code}`;
      finish({ status, output: tail ? `${note}\n${tail}` : note });
    };
    child.once("exit", (code, sig) => {
      exitInfo = { code, sig };
      setTimeout(settle, 100).unref();
    });
    child.once("close", settle);
  });
}
