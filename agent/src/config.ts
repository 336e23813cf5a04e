import { readFileSync } from "node:fs";
import { hostname, networkInterfaces } from "node:os";
import { dirname, extname, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import {
  Address,
  durationBetween,
  formatIssues,
  formatPath,
  LIMITS,
  Meta,
  Name,
  NAME_PATTERN,
  Port,
  Tags,
  Weight,
  natsAuthFields,
  refineNatsAuth,
  SecretFile,
  type CheckType,
  type NatsAuth,
} from "roster-schemas";
import { ConfigError } from "./errors.js";

// ---------------------------------------------------------------------------
// Schema (what a user writes: a config file's `services[]` entry or a PUT body)
// ---------------------------------------------------------------------------

const Threshold = z.number().int().min(1).max(100);
const Interval = durationBetween(100, 3_600_000);
const Timeout = durationBetween(1, 3_600_000);

const checkCommon = {
  /** Stable within the instance; default `<type>-<index>` (e.g. `http-0`). */
  id: Name.optional(),
  interval: Interval.default(10_000),
  /** Default: min(interval, 10s). */
  timeout: Timeout.optional(),
  successBeforePassing: Threshold.default(1),
  failuresBeforeCritical: Threshold.default(2),
};

const HttpCheckInput = z.strictObject({
  type: z.literal("http"),
  ...checkCommon,
  /** Path on the instance's address:port (ignored when `url` is set). */
  path: z.string().startsWith("/", { error: 'expected a path starting with "/"' }).default("/health"),
  /** Full URL instead of address:port + path. */
  url: z.url({ protocol: /^https?$/, error: "expected an http:// or https:// URL" }).optional(),
  method: z.enum(["GET", "HEAD", "POST"]).default("GET"),
  headers: z.record(z.string().min(1), z.string()).default({}),
  tlsSkipVerify: z.boolean().default(false),
});

const TcpCheckInput = z.strictObject({
  type: z.literal("tcp"),
  ...checkCommon,
  /** Default: the instance's address and port. */
  host: Address.optional(),
  port: Port.optional(),
});

const ExecCheckInput = z.strictObject({
  type: z.literal("exec"),
  ...checkCommon,
  /** argv, run without a shell: `["./check.sh", "--quick"]`. */
  command: z.array(z.string().min(1)).min(1, { error: "expected at least the program to run" }),
  /** Working directory; default: the config file's directory (or the agent's cwd for API registrations). */
  cwd: z.string().min(1).optional(),
});

const TtlCheckInput = z.strictObject({
  type: z.literal("ttl"),
  id: Name.optional(),
  /** No report within this long → critical. */
  ttl: durationBetween(100, 86_400_000),
  successBeforePassing: Threshold.default(1),
  failuresBeforeCritical: Threshold.default(1),
});

export const CheckInput = z.discriminatedUnion("type", [HttpCheckInput, TcpCheckInput, ExecCheckInput, TtlCheckInput], {
  error: 'expected a check with type "http", "tcp", "exec" or "ttl"',
});
export type CheckInput = z.output<typeof CheckInput>;

/** One service instance to run checks for: a `services[]` entry, or the body of `PUT /v1/agent/instances`. */
export const ServiceInput = z.strictObject({
  name: Name,
  /** Default `<hostId>-<port>`. Unique on the host. */
  id: Name.optional(),
  port: Port,
  /** Default: the host's primary non-internal IPv4 address, else 127.0.0.1. */
  address: Address.optional(),
  tags: Tags.default([]),
  meta: Meta.default({}),
  weight: Weight.default(100),
  checks: z.array(CheckInput).max(LIMITS.maxChecksPerInstance).default([]),
});
export type ServiceInput = z.output<typeof ServiceInput>;

const ListenAddress = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[^\s:]+):\d{1,5}$/, { error: 'expected host:port like "127.0.0.1:7701"' })
  .transform((s, ctx) => {
    const i = s.lastIndexOf(":");
    const host = s.slice(0, i).replace(/^\[(.*)\]$/, "$1");
    const port = Number(s.slice(i + 1));
    if (port > 65535) {
      ctx.addIssue({ code: "custom", message: "port must be 0-65535" });
      return z.NEVER;
    }
    return { host, port };
  });

export const ConfigInput = z.strictObject({
  host: z.strictObject({ id: Name.optional(), zone: Name.optional() }).prefault({}),
  heartbeat: z.strictObject({ interval: durationBetween(50, 3_600_000).default(1000) }).prefault({}),
  drain: z.strictObject({ period: durationBetween(0, 600_000).default(5000) }).prefault({}),
  api: z
    .strictObject({
      listen: ListenAddress.prefault("127.0.0.1:7701"),
      /** Bearer token the local API requires for writes (env ROSTER_AGENT_TOKEN wins). */
      token: z.string().min(16, { error: "a token must be at least 16 characters" }).optional(),
      tokenFile: SecretFile.optional(),
      /** With a token set: GETs without one are still allowed (a wrong token is refused). */
      openReads: z.boolean().default(true),
    })
    .superRefine((a, ctx) => {
      if (a.token !== undefined && a.tokenFile !== undefined) ctx.addIssue({ code: "custom", path: ["tokenFile"], message: "set token or tokenFile, not both" });
    })
    .prefault({}),
  /** NATS servers and auth; --nats / ROSTER_NATS_URL and ROSTER_NATS_* env win. */
  nats: z
    .strictObject({
      /** One or more comma-separated NATS URLs. */
      url: z.string().min(1).optional(),
      ...natsAuthFields,
    })
    .superRefine(refineNatsAuth)
    .prefault({}),
  services: z.array(ServiceInput).max(LIMITS.maxInstancesPerHost).default([]),
});

// ---------------------------------------------------------------------------
// Resolved form (every default applied): what the rest of the agent uses
// ---------------------------------------------------------------------------

interface CheckBase {
  id: string;
  type: CheckType;
  /** How often the check runs (ttl: unused, 0). */
  intervalMs: number;
  timeoutMs: number;
  successBeforePassing: number;
  failuresBeforeCritical: number;
}
export type HttpCheckSpec = CheckBase & { type: "http"; url: string; method: "GET" | "HEAD" | "POST"; headers: Record<string, string>; tlsSkipVerify: boolean };
export type TcpCheckSpec = CheckBase & { type: "tcp"; host: string; port: number };
export type ExecCheckSpec = CheckBase & { type: "exec"; command: string[]; cwd: string };
export type TtlCheckSpec = CheckBase & { type: "ttl"; ttlMs: number };
export type CheckSpec = HttpCheckSpec | TcpCheckSpec | ExecCheckSpec | TtlCheckSpec;

export interface InstanceSpec {
  id: string;
  service: string;
  address: string;
  port: number;
  zone?: string;
  tags: string[];
  meta: Record<string, string>;
  weight: number;
  checks: CheckSpec[];
}

export interface AgentConfig {
  host: { id: string; zone?: string };
  heartbeatIntervalMs: number;
  drainPeriodMs: number;
  /** `token`: required for writes (and reads unless openReads, default true). */
  api: { host: string; port: number; token?: string; openReads?: boolean };
  nats?: { url?: string } & NatsAuth;
  services: InstanceSpec[];
}

/** Facts about the machine used for defaults; injected so tests are deterministic. */
export interface HostFacts {
  hostname: string;
  defaultAddress: string;
  /** Base directory for relative exec `cwd` and the default exec `cwd`. */
  baseDir: string;
}

export function sanitizeHostId(name: string): string {
  const label = name.split(".")[0] ?? "";
  const cleaned = label.replace(/[^A-Za-z0-9_-]/g, "-").replace(/^[^A-Za-z0-9]+/, "").slice(0, LIMITS.maxNameLength);
  return NAME_PATTERN.test(cleaned) ? cleaned : "host";
}

export function primaryIPv4(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const addr of list ?? []) {
      if (addr.family === "IPv4" && !addr.internal) return addr.address;
    }
  }
  return "127.0.0.1";
}

export function realHostFacts(baseDir = process.cwd()): HostFacts {
  return { hostname: hostname(), defaultAddress: primaryIPv4(), baseDir };
}

export interface InstanceContext {
  hostId: string;
  zone?: string;
  defaultAddress: string;
  baseDir: string;
}

type Issue = { path: PropertyKey[]; message: string };

/**
 * Applies the defaults that depend on the host (id, address, check ids, timeouts, URLs).
 * Returns issues (paths relative to the service entry) instead of throwing.
 */
export function resolveInstance(input: ServiceInput, ctx: InstanceContext): { ok: true; value: InstanceSpec } | { ok: false; issues: Issue[] } {
  const issues: Issue[] = [];
  const id = input.id ?? `${ctx.hostId}-${input.port}`;
  if (!NAME_PATTERN.test(id)) {
    issues.push({ path: ["id"], message: `default id "${id}" is not a valid name: set id explicitly` });
  }
  const address = input.address ?? ctx.defaultAddress;
  const seen = new Set<string>();
  const checks: CheckSpec[] = [];
  input.checks.forEach((c, i) => {
    const checkId = c.id ?? `${c.type}-${i}`;
    if (seen.has(checkId)) issues.push({ path: ["checks", i, "id"], message: `duplicate check id "${checkId}"` });
    seen.add(checkId);
    const thresholds = { successBeforePassing: c.successBeforePassing, failuresBeforeCritical: c.failuresBeforeCritical };
    if (c.type === "ttl") {
      checks.push({ id: checkId, type: "ttl", intervalMs: 0, timeoutMs: 0, ttlMs: c.ttl, ...thresholds });
      return;
    }
    const timeoutMs = c.timeout ?? Math.min(c.interval, 10_000);
    const base = { id: checkId, intervalMs: c.interval, timeoutMs, ...thresholds };
    switch (c.type) {
      case "http": {
        const host = address.includes(":") ? `[${address}]` : address;
        checks.push({ ...base, type: "http", url: c.url ?? `http://${host}:${input.port}${c.path}`, method: c.method, headers: c.headers, tlsSkipVerify: c.tlsSkipVerify });
        break;
      }
      case "tcp":
        checks.push({ ...base, type: "tcp", host: c.host ?? address, port: c.port ?? input.port });
        break;
      case "exec":
        checks.push({ ...base, type: "exec", command: c.command, cwd: resolve(ctx.baseDir, c.cwd ?? ".") });
        break;
    }
  });
  if (issues.length) return { ok: false, issues };
  const value: InstanceSpec = { id, service: input.name, address, port: input.port, tags: input.tags, meta: input.meta, weight: input.weight, checks };
  if (ctx.zone) value.zone = ctx.zone;
  return { ok: true, value };
}

/** Validates a parsed document (from YAML or JSON). Throws ConfigError(ROSTER_CONFIG_INVALID). */
export function parseConfig(doc: unknown, file: string, facts: HostFacts): AgentConfig {
  const parsed = ConfigInput.safeParse(doc ?? {});
  if (!parsed.success) throw new ConfigError("ROSTER_CONFIG_INVALID", file, formatIssues(parsed.error));
  const raw = parsed.data;
  const hostId = raw.host.id ?? sanitizeHostId(facts.hostname);
  const ctx: InstanceContext = { hostId, defaultAddress: facts.defaultAddress, baseDir: facts.baseDir };
  if (raw.host.zone) ctx.zone = raw.host.zone;
  const issues: string[] = [];
  const services: InstanceSpec[] = [];
  const ids = new Map<string, number>();
  raw.services.forEach((svc, i) => {
    const r = resolveInstance(svc, ctx);
    if (!r.ok) {
      for (const issue of r.issues) issues.push(`${formatPath(["services", i, ...issue.path])}: ${issue.message}`);
      return;
    }
    const prev = ids.get(r.value.id);
    if (prev !== undefined) {
      issues.push(`${formatPath(["services", i, "id"])}: instance id "${r.value.id}" already used by services[${prev}] (ids are unique on a host; set id)`);
      return;
    }
    ids.set(r.value.id, i);
    services.push(r.value);
  });
  if (issues.length) throw new ConfigError("ROSTER_CONFIG_INVALID", file, issues);
  const host: AgentConfig["host"] = { id: hostId };
  if (raw.host.zone) host.zone = raw.host.zone;
  const api: AgentConfig["api"] = { ...raw.api.listen };
  const token = raw.api.token ?? raw.api.tokenFile;
  if (token !== undefined) api.token = token;
  if (!raw.api.openReads) api.openReads = false;
  const out: AgentConfig = { host, heartbeatIntervalMs: raw.heartbeat.interval, drainPeriodMs: raw.drain.period, api, services };
  if (Object.keys(raw.nats).length) out.nats = raw.nats;
  return out;
}

/** Parses YAML or JSON text (by extension: .json is JSON, anything else YAML, a superset of JSON). */
export function parseConfigText(text: string, file: string, facts: HostFacts): AgentConfig {
  let doc: unknown;
  try {
    doc = extname(file).toLowerCase() === ".json" ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    const msg = (err as Error).message.split("\n")[0] ?? "parse error";
    throw new ConfigError("ROSTER_CONFIG_PARSE", file, [`(root): not valid ${extname(file).toLowerCase() === ".json" ? "JSON" : "YAML"}: ${msg}`], { cause: err });
  }
  return parseConfig(doc, file, facts);
}

/** Reads and validates a config file. Throws ConfigError with `path: problem` lines. */
export function loadConfigFile(file: string, facts?: Partial<HostFacts>): AgentConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError("ROSTER_CONFIG_READ", file, [`(file): cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`], { cause: err });
  }
  const all: HostFacts = { ...realHostFacts(dirname(resolve(file))), ...facts };
  return parseConfigText(text, file, all);
}
