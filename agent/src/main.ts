import { parseArgs } from "node:util";
import { createLogger, LOG_LEVELS } from "roster-runtime/logger";
import { versionLine } from "roster-runtime";
import { Address } from "roster-schemas";
import { build } from "./app.js";
import { NatsAuthError, natsAuthFromEnv, natsConnectOptions, parseNatsAuth } from "roster-schemas";
import { loadConfigFile, primaryIPv4 } from "./config.js";
import { ConfigError } from "./errors.js";

const USAGE = `usage: roster-agent --config <file> [--nats <url>] [--api <host:port>] [--log-level <level>]

  --config      YAML or JSON config file (required)
  --nats        NATS server URL(s), comma-separated (env ROSTER_NATS_URL; default nats://127.0.0.1:4222)
  --api         local API listen address, overrides api.listen (e.g. 127.0.0.1:7701)
  --log-level   trace, debug, info, warn, error, fatal (env ROSTER_LOG_LEVEL; default info)
  --version     print the version and exit
  --help        print this help and exit

  env ROSTER_LOG_PRETTY: 1 = human-readable lines, 0 = JSON even at a terminal
  env ROSTER_AGENT_TOKEN: bearer token the local API requires for writes (overrides api.token)
  env ROSTER_NATS_USER + ROSTER_NATS_PASSWORD[_FILE], ROSTER_NATS_TOKEN[_FILE],
      ROSTER_NATS_NKEY_SEED[_FILE], ROSTER_NATS_CREDS, ROSTER_NATS_TLS=true,
      ROSTER_NATS_TLS_CA, ROSTER_NATS_TLS_CERT, ROSTER_NATS_TLS_KEY: NATS auth and TLS
  env ROSTER_HOST_ID: the name the default host id is derived from, when the config sets no
  host.id (default: this machine's hostname; in Kubernetes: the node name)
  env ROSTER_HOST_ADDRESS: the address of instances that set none (default: the first
  non-internal IPv4 address; in Kubernetes: the node's IP)
`;
const LEVELS: readonly string[] = LOG_LEVELS;

function fail(message: string): never {
  process.stderr.write(`roster-agent: ${message}\n`);
  process.exit(1);
}

async function main(): Promise<void> {
  let values: { config?: string; nats?: string; api?: string; "log-level"?: string; help?: boolean; version?: boolean };
  try {
    ({ values } = parseArgs({
      options: {
        config: { type: "string", short: "c" },
        nats: { type: "string" },
        api: { type: "string" },
        "log-level": { type: "string" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "v" },
      },
      strict: true,
    }));
  } catch (err) {
    fail(`${(err as Error).message}\n${USAGE}`);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (values.version) {
    process.stdout.write(versionLine("roster-agent", new URL("../../package.json", import.meta.url)));
    return;
  }
  if (!values.config) fail(`--config is required\n${USAGE}`);
  const level = values["log-level"] ?? process.env.ROSTER_LOG_LEVEL ?? "info";
  if (!LEVELS.includes(level)) fail(`--log-level: expected one of ${LEVELS.join(", ")}`);

  // In a container the hostname and the interfaces are the container's: ROSTER_HOST_ID and
  // ROSTER_HOST_ADDRESS (e.g. the node's name and IP from the Kubernetes downward API) stand in.
  const hostName = process.env.ROSTER_HOST_ID?.trim();
  const hostAddress = process.env.ROSTER_HOST_ADDRESS?.trim() || primaryIPv4();
  if (!Address.safeParse(hostAddress).success) fail(`ROSTER_HOST_ADDRESS: expected a host name or IP address, got "${hostAddress}"`);
  let config;
  try {
    config = loadConfigFile(values.config, { defaultAddress: hostAddress, ...(hostName ? { hostname: hostName } : {}) });
  } catch (err) {
    if (err instanceof ConfigError) fail(`${err.message}\n(${err.code})`);
    throw err;
  }
  if (values.api) {
    const m = /^(\[[0-9a-fA-F:]+\]|[^\s:]+):(\d{1,5})$/.exec(values.api);
    if (!m || Number(m[2]) > 65535) fail(`--api: expected host:port like "127.0.0.1:7701", got "${values.api}"`);
    config.api = { ...config.api, host: m[1]!.replace(/^\[(.*)\]$/, "$1"), port: Number(m[2]) };
  }
  const envToken = process.env.ROSTER_AGENT_TOKEN;
  if (envToken !== undefined && envToken !== "") {
    if (envToken.trim().length < 16) fail("ROSTER_AGENT_TOKEN: a token must be at least 16 characters");
    config.api.token = envToken.trim();
  }
  const { url: configUrl, ...configAuth } = config.nats ?? {};
  let natsOptions;
  try {
    const auth = parseNatsAuth({ ...configAuth, ...natsAuthFromEnv(process.env) }, "nats.");
    natsOptions = natsConnectOptions(values.nats ?? process.env.ROSTER_NATS_URL ?? configUrl ?? "nats://127.0.0.1:4222", auth, "nats.");
  } catch (err) {
    if (err instanceof NatsAuthError) fail(`${err.message}\n(${err.code})`);
    throw err;
  }
  const { servers: nats, ...natsAuth } = natsOptions;

  const logger = createLogger({ name: "roster-agent", level, base: { hostId: config.host.id } });
  const agent = build(config, { logger, nats, natsAuth, defaultAddress: hostAddress, processMetrics: true });

  const skip = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals += 1;
    if (signals === 1) {
      logger.info({ signal: sig }, "signal received: draining");
      agent.shutdown({ skipWait: skip.signal }).then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ err }, "shutdown failed");
          process.exit(1);
        },
      );
    } else if (signals === 2) {
      logger.info({ signal: sig }, "second signal: skipping the rest of the drain wait");
      skip.abort();
    } else {
      logger.warn({ signal: sig }, "third signal: exiting now");
      process.exit(1);
    }
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);

  try {
    await agent.start();
  } catch (err) {
    logger.fatal({ err }, "agent failed to start");
    await agent.close().catch(() => undefined);
    process.stderr.write(`roster-agent: cannot start: ${(err as Error).message}\n`);
    process.exit(1);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`roster-agent: unexpected error: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
