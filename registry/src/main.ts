/**
 * The roster-registry process: config from argv/env (flags win), one pino root logger (JSON on
 * stdout), SIGTERM/SIGINT → clean shutdown. A bad config exits 1 naming the field, without a
 * stack trace.
 */
import { readFileSync } from "node:fs";
import { extname } from "node:path";
import { parseArgs } from "node:util";
import { parse as parseYaml } from "yaml";
import { versionLine } from "roster-runtime";
import { createLogger } from "roster-runtime/logger";
import type { Logger } from "pino";
import { NatsAuthError, natsConnectOptions } from "roster-schemas";
import { build } from "./app.js";
import { configFromArgs, parseConfig, REGISTRY_FLAGS, type RegistryConfig } from "./config.js";
import { ConfigError } from "./errors.js";

const USAGE = `usage: roster-registry [--nats <url>] [--http <host:port>] [--config <file.yaml|file.json>]

  --nats     NATS server URL(s), comma-separated (env ROSTER_NATS_URL; default nats://127.0.0.1:4222)
  --http     HTTP API listen address (env ROSTER_HTTP; default 127.0.0.1:7700)
  --config   YAML or JSON file with the other settings (env ROSTER_REGISTRY_CONFIG; see registry/README.md)
  --version  print the version and exit
  --help     print this help and exit

  env ROSTER_LOG_LEVEL: trace, debug, info, warn, error, fatal (default info)
  env ROSTER_LOG_PRETTY: 1 = human-readable lines, 0 = JSON even at a terminal
  env ROSTER_NATS_USER + ROSTER_NATS_PASSWORD[_FILE], ROSTER_NATS_TOKEN[_FILE],
      ROSTER_NATS_NKEY_SEED[_FILE], ROSTER_NATS_CREDS, ROSTER_NATS_TLS=true,
      ROSTER_NATS_TLS_CA, ROSTER_NATS_TLS_CERT, ROSTER_NATS_TLS_KEY: NATS auth and TLS
  env ROSTER_HTTP_READ_TOKEN, ROSTER_HTTP_WRITE_TOKEN: bearer tokens for the HTTP API
`;

// --help and --version answer even beside a bad flag: parseArgs' tokens, not a second parser.
const asked = parseArgs({ args: process.argv.slice(2), options: REGISTRY_FLAGS, strict: false, tokens: true }).tokens;
if (asked.some((t) => t.kind === "option" && t.name === "help")) {
  process.stdout.write(USAGE);
  process.exit(0);
}
if (asked.some((t) => t.kind === "option" && t.name === "version")) {
  process.stdout.write(versionLine("roster-registry", new URL("../../package.json", import.meta.url)));
  process.exit(0);
}

function loadConfig(): RegistryConfig {
  const { configFile, overrides } = configFromArgs(process.argv.slice(2), process.env);
  let file: Record<string, unknown> = {};
  if (configFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(configFile, "utf8");
    } catch (err) {
      throw new ConfigError([`config: cannot read ${configFile}: ${(err as Error).message}`]);
    }
    // As the agent does: .json is JSON, anything else YAML (which reads JSON too).
    const format = extname(configFile).toLowerCase() === ".json" ? "JSON" : "YAML";
    try {
      const parsed: unknown = format === "JSON" ? JSON.parse(text) : parseYaml(text);
      if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error(`expected a ${format} object (a mapping of settings)`);
      file = parsed as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError([`config: ${configFile} is not a ${format} object: ${(err as Error).message.split("\n")[0]}`]);
    }
  }
  const obj = (v: unknown) => (v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {});
  const input: Record<string, unknown> = { ...file };
  if (overrides.nats) input.nats = { ...obj(file.nats), ...overrides.nats };
  if (overrides.http) input.http = { ...obj(file.http), ...overrides.http };
  if (overrides.httpTokens) {
    const http = obj(input.http ?? file.http);
    const auth = obj(http.auth);
    input.http = { ...http, auth: { ...auth, tokens: [...(Array.isArray(auth.tokens) ? auth.tokens : []), ...overrides.httpTokens] } };
  }
  const config = parseConfig(input);
  // Read the NATS secret files now: a bad one is a config error naming the field, not a retry loop.
  try {
    natsConnectOptions(config.nats.url, config.nats, "nats.");
  } catch (err) {
    if (err instanceof NatsAuthError) throw new ConfigError(err.issues);
    throw err;
  }
  return config;
}

let config: RegistryConfig;
try {
  config = loadConfig();
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`roster-registry: ${err.code}: invalid configuration\n${err.issues.map((i) => `  ${i}`).join("\n")}\n`);
    process.exit(1);
  }
  throw err;
}

let logger: Logger;
try {
  logger = createLogger({ name: "roster-registry" });
} catch (err) {
  process.stderr.write(`roster-registry: ${(err as Error).message}\n`);
  process.exit(1);
}
const registry = build(config, { logger, processMetrics: true });

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, "shutting down");
  const force = setTimeout(() => {
    logger.error("shutdown took too long, exiting");
    process.exit(1);
  }, 20_000);
  force.unref();
  try {
    await registry.close();
    process.exit(0);
  } catch (err) {
    logger.error({ err: String(err) }, "shutdown failed");
    process.exit(1);
  }
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
process.on("uncaughtException", (err) => {
  logger.fatal({ err }, "uncaught exception");
  process.exit(1);
});
process.on("unhandledRejection", (err) => {
  logger.error({ err: String(err) }, "unhandled rejection");
});

try {
  await registry.start();
} catch (err) {
  logger.fatal({ err: String(err), listen: config.http.listen }, "cannot start the HTTP listener");
  process.exit(1);
}
