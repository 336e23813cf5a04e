import { spawn } from "node:child_process";
import type { ExecCheckSpec } from "../../config.js";
import type { CheckResult } from "../../core/check.js";
import { errorText } from "./util.js";

export interface ExecOptions {
  /** The whole environment of the command (see `execEnv`); default `execEnv(process.env)`. */
  env?: Record<string, string>;
  /** Bytes of output kept (the tail); default 1024. */
  maxOutputBytes?: number;
  /** Applied to the output before it is cut to size, so a cut never leaves half a secret. */
  redact?: (text: string) => string;
}

/** PATH and LANG (defaults when unset) plus the named variables of `from`: nothing else of the agent's environment. */
export function execEnv(from: Readonly<Record<string, string | undefined>>, passEnv: readonly string[] = []): Record<string, string> {
  const env: Record<string, string> = { PATH: from.PATH ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", LANG: from.LANG ?? "C.UTF-8" };
  for (const name of passEnv) {
    const v = from[name];
    if (v !== undefined) env[name] = v;
  }
  return env;
}

/**
 * Exec check: the command runs without a shell, in its own process group, with a minimal
 * environment (`execEnv`); exit 0 passing, 1 warning, anything else critical. At its timeout the
 * whole group gets SIGKILL. Output is the last `maxOutputBytes` of stdout and stderr interleaved,
 * redacted; at most 4 × that is ever held in memory however much the command writes.
 */
export function probeExec(spec: Pick<ExecCheckSpec, "command" | "cwd" | "timeoutMs">, signal?: AbortSignal, opts: ExecOptions = {}): Promise<CheckResult> {
  const maxBytes = opts.maxOutputBytes ?? 1024;
  const redact = opts.redact ?? ((t: string) => t);
  return new Promise((resolve) => {
    const [file, ...args] = spec.command;
    let output = Buffer.alloc(0);
    let settled = false;
    let killedFor: string | undefined;
    const child = spawn(file!, args, { cwd: spec.cwd, stdio: ["ignore", "pipe", "pipe"], detached: true, env: opts.env ?? execEnv(process.env) });
    const keep = (d: Buffer) => {
      output = Buffer.concat([output, d]);
      if (output.length > maxBytes * 4) output = output.subarray(output.length - maxBytes * 4);
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
      const tail = tailBytes(redact(output.toString("utf8")).trim(), maxBytes - 64);
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

/** The last `max` bytes of `text`, starting on a character boundary. */
function tailBytes(text: string, max: number): string {
  const buf = Buffer.from(text, "utf8");
  if (buf.length <= max) return text;
  let start = buf.length - max;
  while (start < buf.length && (buf[start]! & 0xc0) === 0x80) start += 1;
  return buf.subarray(start).toString("utf8");
}
