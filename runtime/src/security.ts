/**
 * Process-level security helpers every Roster process shares (`roster-runtime/security`):
 * what counts as loopback, the one loud start-up warning about exposed listeners and credentials
 * on the command line, a redactor for secret values in free text (check outputs), and where the
 * agent's generated API token lives by default (the agent writes it, the CLI reads it).
 * No I/O except `defaultAgentTokenFile`'s look at the file system; no logger dependency (the
 * caller logs what `securityWarnings` returns).
 */
import { accessSync, constants } from "node:fs";
import { isIP } from "node:net";
import { homedir } from "node:os";
import { join } from "node:path";

/** `[::1]` → `::1`; other values unchanged (lower-cased). */
function bare(host: string): string {
  return host.trim().toLowerCase().replace(/^\[(.*)\]$/, "$1");
}

/** True for names and addresses that only this machine can reach: localhost, 127.0.0.0/8, ::1. */
export function isLoopbackHost(host: string): boolean {
  const h = bare(host);
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  if (isIP(h) === 6) return h === "::1" || h === "0:0:0:0:0:0:0:1" || /^::ffff:127\./.test(h);
  return false;
}

/**
 * Addresses a check probe must never be pointed at by someone without the operator's say-so:
 * link-local (169.254.0.0/16, fe80::/10, where cloud metadata services live), the AWS IPv6
 * metadata address, and the metadata host names clouds publish.
 */
export function isMetadataOrLinkLocal(host: string): boolean {
  const h = bare(host).replace(/\.$/, "");
  if (isIP(h) === 4) return h.startsWith("169.254.") || h === "100.100.100.200"; // Alibaba's metadata address
  if (isIP(h) === 6) {
    if (/^fe[89ab][0-9a-f]:/.test(h)) return true;
    if (h === "fd00:ec2::254") return true;
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
    return mapped ? isMetadataOrLinkLocal(mapped[1]!) : false;
  }
  return h === "metadata" || h === "metadata.google.internal" || h === "instance-data" || h.startsWith("instance-data.") || h === "metadata.azure.com";
}

/** One listener of a process, as far as the warning cares. */
export interface Listener {
  /** What listens, for the message: "HTTP API", "local API". */
  what: string;
  /** The bound host (`0.0.0.0`, `127.0.0.1`, `::`, a name). */
  host: string;
  /** Whether callers must authenticate (a token is configured). */
  authenticated: boolean;
}

/** URL userinfo (`nats://user:pass@`, `nats://token@`) anywhere in a comma-separated list. */
const URL_USERINFO = /[a-z][a-z0-9+.-]*:\/\/[^\s/@,]+@/i;

/**
 * The flags on `argv` that carry a credential: a URL with userinfo (`--nats user:pass@…`), or a
 * token flag. Anything on the command line is readable by every local user in /proc/<pid>/cmdline.
 */
export function credentialFlags(argv: readonly string[], tokenFlags: readonly string[] = ["token"]): string[] {
  const found = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const m = /^--([A-Za-z0-9-]+)(?:=(.*))?$/.exec(a);
    if (!m) continue;
    const value = m[2] ?? argv[i + 1] ?? "";
    if (tokenFlags.includes(m[1]!)) found.add(`--${m[1]}`);
    else if (URL_USERINFO.test(value)) found.add(`--${m[1]}`);
  }
  return [...found];
}

/**
 * The start-up warnings of a process: each listener bound beyond loopback without auth, and
 * credentials passed as flags. Pure: the caller logs them (one `warn` line each, `security: true`).
 */
export function securityWarnings(opts: { listeners: readonly Listener[]; argv?: readonly string[]; tokenFlags?: readonly string[] }): string[] {
  const out: string[] = [];
  for (const l of opts.listeners) {
    if (!l.authenticated && !isLoopbackHost(l.host)) {
      out.push(`SECURITY: the ${l.what} listens on ${l.host.includes(":") ? `[${bare(l.host)}]` : l.host}, beyond loopback, WITHOUT authentication: anyone who can reach it can use it. Configure a token, or listen on 127.0.0.1`);
    }
  }
  const flags = credentialFlags(opts.argv ?? [], opts.tokenFlags);
  if (flags.length) {
    out.push(`SECURITY: credentials were passed on the command line (${flags.join(", ")}): every local user can read them in /proc/<pid>/cmdline and ps. Use the ROSTER_* environment variables or *_FILE settings instead`);
  }
  return out;
}

/** What the logger needs for `logSecurityWarnings` (a pino logger fits). */
export interface WarnLogger {
  warn(obj: Record<string, unknown>, msg: string): void;
}

/** Logs each warning of `securityWarnings` as one loud `warn` line; returns how many. */
export function logSecurityWarnings(log: WarnLogger, opts: Parameters<typeof securityWarnings>[0]): number {
  const warnings = securityWarnings(opts);
  for (const w of warnings) log.warn({ security: true }, w);
  return warnings.length;
}

/**
 * Replaces every occurrence of a known secret value in free text with `[redacted]`. Values
 * shorter than 8 characters are ignored (they would redact ordinary words and leak nothing).
 */
export class SecretRedactor {
  private values: string[] = [];

  constructor(values: Iterable<string | undefined> = []) {
    for (const v of values) this.add(v);
  }

  add(value: string | undefined): void {
    const v = value?.trim();
    if (!v || v.length < 8 || this.values.includes(v)) return;
    // Longest first, so a secret that contains another is replaced whole.
    this.values = [...this.values, v].sort((a, b) => b.length - a.length);
  }

  get size(): number {
    return this.values.length;
  }

  redact(text: string): string {
    let out = text;
    for (const v of this.values) if (out.includes(v)) out = out.split(v).join("[redacted]");
    return out;
  }
}

/** Env names whose values are secrets (ROSTER_NATS_PASSWORD, ROSTER_AGENT_TOKEN, AWS_SECRET_ACCESS_KEY, ...). */
export const SECRET_ENV_NAME = /(PASSWORD|PASSWD|PASS|TOKEN|SECRET|SEED|CREDENTIAL|CREDS|PRIVATE|API_?KEY|ACCESS_?KEY|AUTH)/i;

/** The values of the secret-looking variables of `env` (not their `_FILE` paths). */
export function secretEnvValues(env: Readonly<Record<string, string | undefined>>): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(env)) if (v && SECRET_ENV_NAME.test(k) && !k.endsWith("_FILE")) out.push(v);
  return out;
}

/**
 * Where the agent writes the API token it generates, and where the CLI looks for it:
 * env ROSTER_AGENT_TOKEN_FILE; else `/run/roster/agent-token` when /run/roster exists and is
 * writable (systemd's RuntimeDirectory=roster, a root agent); else `~/.roster/agent-token`.
 */
export function defaultAgentTokenFile(env: Readonly<Record<string, string | undefined>> = process.env): string {
  const fromEnv = env.ROSTER_AGENT_TOKEN_FILE?.trim();
  if (fromEnv) return fromEnv;
  try {
    accessSync("/run/roster", constants.W_OK);
    return "/run/roster/agent-token";
  } catch {
    return join(env.HOME || homedir(), ".roster", "agent-token");
  }
}

/** Every place the CLI looks for the agent's token, in order (env first). */
export function agentTokenFileCandidates(env: Readonly<Record<string, string | undefined>> = process.env): string[] {
  const fromEnv = env.ROSTER_AGENT_TOKEN_FILE?.trim();
  if (fromEnv) return [fromEnv];
  return ["/run/roster/agent-token", join(env.HOME || homedir(), ".roster", "agent-token")];
}
