import { parseArgs, type ParseArgsConfig } from "node:util";
import { Duration, HttpAuthConfig, formatIssues, natsAuthFields, natsAuthFromEnv, refineNatsAuth } from "roster-schemas";
import { HttpTls, RateLimitConfig } from "./adapters/http/auth.js";
import { XdsConfig } from "./adapters/xds/config.js";
import { listenerConfigs } from "./adapters/listeners-config.js";
import { z } from "zod";
import { ConfigError } from "./errors.js";

const HOST_PORT_RE = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;
const HostPort = z
  .string()
  .refine((s) => HOST_PORT_RE.test(s) && Number(s.slice(s.lastIndexOf(":") + 1)) <= 65535, {
    error: 'expected "host:port" with a port 0-65535, e.g. "127.0.0.1:7700"',
  });

const { DnsConfig, ConsulApiConfig } = listenerConfigs(HostPort);

const NatsUrl = z
  .string()
  .regex(/^(nats|tls|ws|wss):\/\/[^\s]+$/, { error: 'expected a NATS URL like "nats://127.0.0.1:4222"' });

/** The registry's whole configuration. Every field has a default; durations accept "1s", "500ms", ... or ms. */
export const RegistryConfig = z
  .object({
    nats: z
      .object({
        /** One or more comma-separated NATS URLs. */
        url: z.string().default("nats://127.0.0.1:4222").pipe(
          z.string().refine((s) => s.split(",").every((u) => NatsUrl.safeParse(u.trim()).success), {
            error: 'expected a NATS URL like "nats://127.0.0.1:4222" (several: comma-separated)',
          }),
        ),
        /** Wait between reconnect attempts. */
        reconnectWait: Duration.default(500),
        /**
         * Heartbeats and snapshot requests on a second connection, so transitions never queue behind
         * them. Off by default: messages of one host are then no longer read in the order sent
         * (docs/architecture.md, "Transitions first").
         */
        bulkConnection: z.boolean().default(false),
        /** user/password, token, nkey seed, creds file, tls (see docs/architecture.md "Security"). */
        ...natsAuthFields,
      })
      .strict()
      .superRefine(refineNatsAuth)
      .default({ url: "nats://127.0.0.1:4222", reconnectWait: 500, bulkConnection: false }),
    http: z
      .object({
        listen: HostPort.default("127.0.0.1:7700"),
        /** Bearer tokens with read/write scopes; absent = no auth (loopback-only setups). */
        auth: HttpAuthConfig.optional(),
        /** Refuse to start without a token (deploy/ sets it: fail closed when the secrets are missing). */
        requireAuth: z.boolean().default(false),
        /** HTTPS: certFile + keyFile (+ caFile to require client certificates). */
        tls: HttpTls.optional(),
        /** Requests per client (token, else IP) per window; absent = no limit. */
        rateLimit: RateLimitConfig.optional(),
        /** Largest request body accepted (bytes); larger → 413 ROSTER_PAYLOAD_TOO_LARGE. */
        bodyLimit: z.number().int().min(1).max(64 * 1024 * 1024).default(1024 * 1024),
      })
      .strict()
      .prefault({}),
    /** A host silent for multiplier × its announced heartbeatIntervalMs is lost (agent-lost). */
    heartbeatTimeoutMultiplier: z.number().min(1).max(100).default(3),
    /** An agent epoch (its boot time) further ahead of the registry's clock than this is refused (future-epoch). */
    epochSkew: Duration.default(300_000),
    /** A register/heartbeat announcing a longer heartbeat interval is refused (bad-interval). */
    maxHeartbeatInterval: Duration.default(60_000),
    /** Interval assumed for a host loaded from KV until its agent speaks again. */
    assumedHeartbeatInterval: Duration.default(5000),
    /** An instance agent-lost for longer than this is deleted (unless in self-preservation). */
    deregisterAfter: Duration.default(60_000),
    selfPreservation: z
      .object({
        /** Fraction of known hosts that must fall silent within one window (strictly more than) to enter the mode. */
        threshold: z.number().min(0).max(1).default(0.3),
        /** ... and at least this many silent hosts. */
        minHosts: z.number().int().min(1).default(3),
        /** The window: hosts a partition cuts off fall silent within one heartbeat interval of each other. */
        window: Duration.default(15_000),
      })
      .strict()
      .default({ threshold: 0.3, minHosts: 3, window: 15_000 }),
    /** How often the registry publishes its presence. */
    presenceInterval: Duration.default(1000),
    /** How often silence and expiry are evaluated. */
    tickInterval: Duration.default(100),
    /** Replicas of the KV buckets: "auto" = 3 on a NATS cluster (fewer if it has fewer servers), 1 on a single server. */
    kvReplicas: z.union([z.literal("auto"), z.number().int().min(1).max(5)]).default("auto"),
    /** How often the registry checks that its buckets still exist (a NATS node back with an empty store). */
    storeCheckInterval: Duration.default(1000),
    /**
     * This registry's identity (lease holder, presence). Default: `<hostname>-<port>` when the HTTP
     * port is fixed, so a restarted registry recognises its own lease; a random id on port 0.
     */
    registryId: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/, { error: "expected 1-128 of A-Z a-z 0-9 . _ : -" }).optional(),
    /** Longest `wait` a blocking query may ask for. */
    maxBlockingWait: Duration.default(300_000),
    /** Server-sent event streams (/v1/stream, /v1/services/:name/stream). */
    streams: z
      .object({
        /** Streams held open at most; past it a new one gets 503 ROSTER_TOO_MANY_STREAMS. */
        maxOpen: z.number().int().min(1).max(1_000_000).default(10_000),
        /** Streams one client (its token's name, else its IP) may hold; past it 429 ROSTER_TOO_MANY_CLIENT_STREAMS. */
        maxPerClient: z.number().int().min(1).max(1_000_000).default(32),
        /** Bytes held for one stream (the first snapshot included) before it is dropped as too slow. */
        maxBufferedBytes: z.number().int().min(4096).max(256 * 1024 * 1024).default(1 << 20),
        /** Changes kept per service for resuming with Last-Event-ID. */
        ringSize: z.number().int().min(1).max(100_000).default(256),
      })
      .strict()
      .prefault({}),
    /**
     * The bulk lane (docs/architecture.md, "Transitions first"): snapshot requests wait here and are
     * served between agent messages; past these bounds bulk work is answered "retry later".
     */
    bulkLane: z
      .object({
        /**
         * On by default. Off: snapshot requests are answered where they are read and nothing is shed
         * (it was off while a herd of 100 clients synced far slower through it; the cause was a
         * re-registration loop elsewhere: docs/architecture.md, "Transitions first").
         */
        enabled: z.boolean().default(true),
        /** Snapshot requests held at most; one more is answered `snapshot-busy`. */
        maxQueued: z.number().int().min(1).max(1_000_000).default(2000),
        /** Event-loop lag above which the registry counts as overloaded for a second: HTTP catalog bodies past `overloadedBodiesPerSecond` get 503 ROSTER_OVERLOADED. */
        maxLag: Duration.default(250),
        /** Catalog bodies still served per second while overloaded (the rest 503): nobody starves for good. */
        overloadedBodiesPerSecond: z.number().int().min(1).max(1_000_000).default(20),
      })
      .strict()
      .prefault({}),
    /** Longest time a single KV write is retried (across a leader election) before it is given up. */
    kvWriteRetryFor: Duration.default(30_000),
    /** Registry replicas: one writer at a time, elected by a lease on KV compare-and-set (docs/architecture.md). */
    lease: z
      .object({
        /**
         * On (default): run any number of replicas, one writes; a restarted registry (same id) takes
         * its own lease back at once. Off: this registry always writes (exactly one registry, no lease bucket).
         */
        enabled: z.boolean().default(true),
        /** A standby takes over after a full ttl without a renewal; the writer renews every (ttl - margin) / 2. */
        ttl: Duration.default(3000),
        /** The writer stops writing this long before its ttl ends (clock-rate drift, event-loop stalls). */
        margin: Duration.default(1000),
      })
      .strict()
      .refine((l) => l.margin > 0 && l.margin * 2 <= l.ttl && l.ttl >= 300, { error: "expected ttl >= 300ms and 0 < margin <= ttl / 2", path: ["margin"] })
      .default({ enabled: true, ttl: 3000, margin: 1000 }),
    /** xDS (Envoy ADS) server for Envoy and proxyless gRPC clients; absent = off (env ROSTER_XDS sets `listen`). */
    xds: XdsConfig.optional(),
    /** DNS interface (off unless dns.listen is set): docs/dns-and-consul.md. */
    dns: DnsConfig,
    /** Consul-compatible read API (off unless consulApi.listen is set): docs/dns-and-consul.md. */
    consulApi: ConsulApiConfig,
  })
  .strict();
export type RegistryConfig = z.output<typeof RegistryConfig>;
export type RegistryConfigInput = z.input<typeof RegistryConfig>;

/** Parses a config object; throws ConfigError whose issues name each bad field. */
export function parseConfig(input: unknown): RegistryConfig {
  const r = RegistryConfig.safeParse(input ?? {});
  if (!r.success) throw new ConfigError(formatIssues(r.error));
  return r.data;
}

/**
 * The registry's identity: `registryId` if set, else `<hostname>-<port>` for a fixed HTTP port (two
 * live registries on one host cannot share a port, so the id is unique where it matters, and a
 * restarted process finds its own lease and writes at once), else (port 0) a random one.
 */
export function registryIdentity(config: RegistryConfig, hostname: string, random: () => string): string {
  if (config.registryId) return config.registryId;
  const { port } = splitHostPort(config.http.listen);
  if (port === 0) return random();
  const host = hostname.replace(/[^A-Za-z0-9._-]/g, "-").slice(0, 100) || "registry";
  return `${host}-${port}`;
}

/** `"127.0.0.1:7700"` → `{ host, port }` (brackets stripped for IPv6). */
export function splitHostPort(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(":");
  const host = listen.slice(0, i).replace(/^\[(.*)\]$/, "$1");
  return { host, port: Number(listen.slice(i + 1)) };
}

/** The registry's flags (`node:util` parseArgs); --help and --version are answered by main.ts. */
export const REGISTRY_FLAGS = {
  nats: { type: "string" },
  http: { type: "string" },
  config: { type: "string", short: "c" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "v" },
} as const satisfies ParseArgsConfig["options"];

/** parseArgs' error as one line naming the flag ("--nats needs a value", "unknown flag --what"). */
function flagProblem(err: Error & { code?: string }): string {
  const flag = /'(-[^' ]+)/.exec(err.message)?.[1];
  const known = Object.keys(REGISTRY_FLAGS).map((f) => `--${f}`).join(", ");
  if (err.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") return `unknown flag ${flag ?? ""} (known: ${known})`;
  if (err.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && flag) return `${flag} needs a value`;
  if (err.code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") return `unexpected argument ${/'([^']*)'/.exec(err.message)?.[1] ?? ""} (flags: ${known})`;
  return err.message.split("\n")[0]!;
}

/**
 * Builds the config input from argv and env (flags win over env, env over the file).
 * Flags: --nats <url> --http <host:port> --config <file.yaml|file.json>; env: ROSTER_NATS_URL, ROSTER_HTTP,
 * ROSTER_NATS_USER/_PASSWORD/_TOKEN/_NKEY_SEED[_FILE]/_CREDS/_TLS* (NATS auth),
 * ROSTER_HTTP_READ_TOKEN / ROSTER_HTTP_WRITE_TOKEN (added to http.auth.tokens),
 * ROSTER_DNS (dns.listen), ROSTER_CONSUL_API (consulApi.listen).
 * Returns the raw input plus the config file path (read by the caller).
 */
export function configFromArgs(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): { configFile?: string; overrides: { nats?: Record<string, unknown>; http?: { listen: string }; httpTokens?: { name: string; token?: string; tokenFile?: string; scopes: string[] }[]; dns?: { listen: string }; consulApi?: { listen: string } } } {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: [...argv], options: REGISTRY_FLAGS, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new ConfigError([`argv: ${flagProblem(err as Error & { code?: string })}`]);
  }
  const flags = new Map(Object.entries(values).filter((e): e is [string, string] => typeof e[1] === "string"));
  const natsUrl = flags.get("nats") ?? env.ROSTER_NATS_URL;
  const http = flags.get("http") ?? env.ROSTER_HTTP;
  const overrides: { nats?: Record<string, unknown>; http?: { listen: string }; httpTokens?: { name: string; token?: string; tokenFile?: string; scopes: string[] }[]; dns?: { listen: string }; consulApi?: { listen: string } } = {};
  if (env.ROSTER_DNS) overrides.dns = { listen: env.ROSTER_DNS };
  if (env.ROSTER_CONSUL_API) overrides.consulApi = { listen: env.ROSTER_CONSUL_API };
  const natsAuth = natsAuthFromEnv(env);
  if (natsUrl !== undefined || Object.keys(natsAuth).length) overrides.nats = { ...(natsUrl !== undefined ? { url: natsUrl } : {}), ...natsAuth };
  const tokens: { name: string; token?: string; tokenFile?: string; scopes: string[] }[] = [
    ...(env.ROSTER_HTTP_READ_TOKEN ? [{ name: "env-read-token", token: env.ROSTER_HTTP_READ_TOKEN, scopes: ["read"] }] : []),
    ...(env.ROSTER_HTTP_WRITE_TOKEN ? [{ name: "env-write-token", token: env.ROSTER_HTTP_WRITE_TOKEN, scopes: ["read", "write"] }] : []),
    // The same from files (Kubernetes Secrets, systemd credentials): the value never sits in the environment.
    ...(env.ROSTER_HTTP_READ_TOKEN_FILE ? [{ name: "env-read-token-file", tokenFile: env.ROSTER_HTTP_READ_TOKEN_FILE, scopes: ["read"] }] : []),
    ...(env.ROSTER_HTTP_WRITE_TOKEN_FILE ? [{ name: "env-write-token-file", tokenFile: env.ROSTER_HTTP_WRITE_TOKEN_FILE, scopes: ["read", "write"] }] : []),
  ];
  if (tokens.length) overrides.httpTokens = tokens;
  if (http !== undefined) overrides.http = { listen: http };
  const configFile = flags.get("config") ?? env.ROSTER_REGISTRY_CONFIG;
  return configFile === undefined ? { overrides } : { configFile, overrides };
}
