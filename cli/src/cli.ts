import { parseArgs } from "node:util";
import { versionLine } from "roster-runtime";
import { parseDuration } from "roster-schemas";
import { z } from "zod";
import { deregister, maintenance, register } from "./commands/agent.js";
import { instances } from "./commands/instances.js";
import { catalog, health } from "./commands/registry.js";
import { services } from "./commands/services.js";
import type { Command, Context, OptionSpec } from "./context.js";
import { CliError, EXIT, UsageError, formatError, type ExitCode } from "./errors.js";

export const COMMANDS: readonly Command[] = [services, instances, register, deregister, maintenance, catalog, health];

export const DEFAULT_REGISTRY = "http://127.0.0.1:7700";
export const DEFAULT_AGENT = "http://127.0.0.1:7701";

const GLOBAL: Record<string, OptionSpec> = {
  registry: { type: "string" },
  agent: { type: "string" },
  token: { type: "string" },
  timeout: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "v" },
};

export const USAGE = `usage: roster [global options] <command> [options]

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(15)} ${c.synopsis}`).join("\n")}
  help <command>  a command's help (same as roster <command> --help)

Global options (anywhere on the line):
  --registry <url>  registry HTTP API (env ROSTER_REGISTRY_URL; default ${DEFAULT_REGISTRY})
  --agent <url>     host agent's local API, for register/deregister/maintenance
                    (env ROSTER_AGENT_URL; default ${DEFAULT_AGENT})
  --token <token>   sent as "Authorization: Bearer <token>" (env ROSTER_TOKEN)
  --timeout <dur>   per-request timeout (default 10s)
  --json            JSON on stdout for scripts (errors stay on stderr)
  -h, --help        this help
  -v, --version     print the version and exit

Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 registry/agent unreachable, 5 unhealthy.
`;

const HttpUrl = z.url({ protocol: /^https?$/, error: "expected an http:// or https:// URL" }).transform((u) => u.replace(/\/+$/, ""));
const Settings = z.object({
  url: HttpUrl,
  token: z.string().regex(/^[\x21-\x7e]{1,4096}$/, { error: "expected printable characters without spaces" }).optional(),
  timeout: z.string().refine((s) => (parseDuration(s) ?? 0) >= 1, { error: 'expected a duration like "10s" or "500ms"' }),
});
const SETTING_SOURCE: Record<string, string> = {
  token: "--token / ROSTER_TOKEN",
  timeout: "--timeout",
};

export interface Io {
  out(text: string): void;
  err(text: string): void;
  env: NodeJS.ProcessEnv;
}

function usageOf(command: string | undefined): string {
  return COMMANDS.find((c) => c.name === command)?.usage ?? USAGE;
}

async function dispatch(argv: string[], io: Io): Promise<ExitCode> {
  // First pass, globals only: find the command wherever the global flags are.
  const pre = parseArgs({ args: argv, options: GLOBAL, strict: false, allowPositionals: true });
  let [name, ...rest] = pre.positionals;
  if (pre.values.version === true) {
    io.out(versionLine("roster", new URL("../../package.json", import.meta.url)));
    return EXIT.ok;
  }
  if (name === undefined) {
    if (pre.values.help) {
      io.out(USAGE);
      return EXIT.ok;
    }
    throw new UsageError("missing command");
  }
  if (name === "help") {
    const target = rest[0];
    if (target === undefined) {
      io.out(USAGE);
      return EXIT.ok;
    }
    if (!COMMANDS.some((c) => c.name === target)) throw new UsageError(`unknown command "${target}"`);
    io.out(usageOf(target));
    return EXIT.ok;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) throw new UsageError(`unknown command "${name}"`);

  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { ...GLOBAL, ...command.options }, strict: true, allowPositionals: true });
  } catch (err) {
    throw new UsageError((err as Error).message.split("\n")[0]!.replace(/\. To specify a positional.*$/, ""), command.name);
  }
  const values = parsed.values as Record<string, string | boolean | string[] | undefined>;
  if (values.help) {
    io.out(command.usage);
    return EXIT.ok;
  }
  [name, ...rest] = parsed.positionals;

  // Only the server this command calls: a stale ROSTER_AGENT_URL must not break `roster services`.
  const fromFlag = command.server === "registry" ? values.registry : values.agent;
  const fromEnv = command.server === "registry" ? io.env.ROSTER_REGISTRY_URL : io.env.ROSTER_AGENT_URL;
  const s = Settings.safeParse({
    url: fromFlag ?? (fromEnv || (command.server === "registry" ? DEFAULT_REGISTRY : DEFAULT_AGENT)),
    token: values.token ?? (io.env.ROSTER_TOKEN || undefined),
    timeout: values.timeout ?? "10s",
  });
  if (!s.success) {
    const i = s.error.issues[0]!;
    const field = String(i.path[0]);
    const source = field === "url" ? (command.server === "registry" ? "--registry / ROSTER_REGISTRY_URL" : "--agent / ROSTER_AGENT_URL") : SETTING_SOURCE[field] ?? field;
    throw new UsageError(`${source}: ${i.message}`, command.name);
  }
  const timeoutMs = parseDuration(s.data.timeout)!;
  const target = (kind: "registry" | "agent") => ({ kind, baseUrl: kind === command.server ? s.data.url : "", token: s.data.token, timeoutMs });
  const ctx: Context = {
    registry: target("registry"),
    agent: target("agent"),
    json: values.json === true,
    out: io.out,
    err: io.err,
  };
  const commandValues = Object.fromEntries(Object.entries(values).filter(([k]) => !(k in GLOBAL)));
  return command.run(ctx, rest, commandValues);
}

/** Runs one command line; never throws: errors are printed on stderr and become the exit code. */
export async function run(argv: string[], io: Io): Promise<ExitCode> {
  try {
    return await dispatch(argv, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(formatError(err));
      io.err(`\n${usageOf(err.command)}`);
      return EXIT.usage;
    }
    if (err instanceof CliError) {
      io.err(formatError(err));
      return err.exit;
    }
    io.err(`roster: ROSTER_INTERNAL: ${(err as Error)?.stack ?? String(err)}\n`);
    return EXIT.error;
  }
}
