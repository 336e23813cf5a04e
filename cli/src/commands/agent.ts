import { readFile } from "node:fs/promises";
import { LIMITS, Name } from "roster-schemas";
import { request } from "../client.js";
import { jsonText, type Command, type Context, type Values } from "../context.js";
import { registerBody, type RegisterFlags } from "../core/register.js";
import { CliError, EXIT, UsageError } from "../errors.js";
import { Maintenance, Removed, Upserted } from "../wire.js";

const DEFINITION_FLAGS = ["service", "id", "address", "port", "tag", "meta", "weight", "check-http", "check-tcp", "check-ttl", "check-interval", "check-timeout"];

function instanceId(args: string[], command: string, at = 0): string {
  const id = args[at];
  if (id === undefined) throw new UsageError("missing <instance-id>", command);
  if (args.length > at + 1) throw new UsageError(`unexpected argument "${args[at + 1]}"`, command);
  const r = Name.safeParse(id);
  if (!r.success) throw new UsageError(`<instance-id>: ${r.error.issues[0]!.message}`, command);
  return id;
}

/** The agent's 404 names the instance; say how to list them. */
function withListHint(ctx: Context) {
  return (err: unknown): never => {
    if (err instanceof CliError && err.code === "ROSTER_NOT_FOUND") {
      throw new CliError(err.code, err.message, { hint: `list this host's instances: GET ${ctx.agent.baseUrl}/v1/agent/instances` });
    }
    throw err;
  };
}

async function readDefinition(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new CliError("ROSTER_CLI_FILE", `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { hint: "check the --file path" });
  }
  let doc: unknown;
  try {
    // YAML 1.2 is a superset of JSON: one parser for both. Loaded here only: it slows every start.
    const { parse } = await import("yaml");
    doc = parse(text);
  } catch (err) {
    throw new CliError("ROSTER_CLI_FILE", `${path} is not valid JSON or YAML: ${(err as Error).message.split("\n")[0]}`);
  }
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) {
    throw new CliError("ROSTER_CLI_FILE", `${path} must hold one service definition (a mapping with name, port, ...)`, { hint: "see roster register --help" });
  }
  return doc as Record<string, unknown>;
}

export const register: Command = {
  name: "register",
  server: "agent",
  synopsis: "register an instance with the agent (flags or --file)",
  usage: `usage: roster register --service <name> --port <port> [--id <id>] [--address <addr>] [--tag <t>]...
                       [--meta k=v]... [--weight <n>] [--check-http <url> | --check-tcp <host:port> | --check-ttl <dur>]
                       [--check-interval <dur>] [--check-timeout <dur>] [--json]
       roster register --file <definition.yaml|json> [--json]

Registers (or replaces, same id) an instance with the host agent's local API (PUT /v1/agent/instances);
the agent runs its checks and publishes it to the registry. The definition is a services[] entry of
the agent's config (see agent/README.md).

  --service <name>        service name (required)
  --port <port>           port the instance listens on (required)
  --id <id>               instance id, unique on the host (default <hostId>-<port>)
  --address <addr>        address to publish (default: the host's address)
  --tag <tag>             a tag; repeat for more
  --meta key=value        a meta entry; repeat for more
  --weight <n>            balancing weight, ${LIMITS.minWeight}-${LIMITS.maxWeight} (default 100)
  --check-http <url>      an http check on this URL
  --check-tcp <host:port> a tcp check
  --check-ttl <dur>       a ttl check (the service reports pass/warn/fail to the agent)
  --check-interval <dur>  how often the http/tcp check runs (default 10s)
  --check-timeout <dur>   its timeout (default min(interval, 10s))
  --file <path>           the definition as a JSON or YAML file instead of the flags
  --json                  the agent's answer as JSON
`,
  options: {
    service: { type: "string" },
    id: { type: "string" },
    address: { type: "string" },
    port: { type: "string" },
    tag: { type: "string", multiple: true },
    meta: { type: "string", multiple: true },
    weight: { type: "string" },
    "check-http": { type: "string" },
    "check-tcp": { type: "string" },
    "check-ttl": { type: "string" },
    "check-interval": { type: "string" },
    "check-timeout": { type: "string" },
    file: { type: "string", short: "f" },
  },
  async run(ctx, args, values: Values) {
    if (args.length > 0) throw new UsageError(`unexpected argument "${args[0]}"`, "register");
    let body: Record<string, unknown>;
    if (typeof values.file === "string") {
      const mixed = DEFINITION_FLAGS.filter((f) => values[f] !== undefined);
      if (mixed.length) throw new UsageError(`--file does not mix with --${mixed.join(", --")}: put them in the file`, "register");
      body = await readDefinition(values.file);
    } else {
      if (values.service === undefined) throw new UsageError("missing --service (or --file)", "register");
      if (values.port === undefined) throw new UsageError("missing --port", "register");
      const r = registerBody(values as RegisterFlags);
      if (!r.ok) throw new UsageError(r.issues.join("; "), "register");
      body = r.body;
    }
    const { body: answer } = await request(ctx.agent, "v1/agent/instances", { method: "PUT", body, schema: Upserted });
    ctx.out(ctx.json ? jsonText(answer) : `${answer.replaced ? "replaced" : "registered"} instance ${answer.id} with the agent at ${ctx.agent.baseUrl}\n`);
    return EXIT.ok;
  },
};

export const deregister: Command = {
  name: "deregister",
  server: "agent",
  synopsis: "remove an instance from the agent",
  usage: `usage: roster deregister <instance-id> [--json]

Removes an instance registered with the host agent (DELETE /v1/agent/instances/<id>); the agent
tells the registry at once. Exits 3 (ROSTER_NOT_FOUND) if the agent does not hold it.
`,
  options: {},
  async run(ctx, args) {
    const id = instanceId(args, "deregister");
    const { body } = await request(ctx.agent, `v1/agent/instances/${encodeURIComponent(id)}`, { method: "DELETE", schema: Removed }).catch(withListHint(ctx));
    ctx.out(ctx.json ? jsonText(body) : `deregistered instance ${body.id}\n`);
    return EXIT.ok;
  },
};

export const maintenance: Command = {
  name: "maintenance",
  server: "agent",
  synopsis: "drain an instance (on) or put it back in service (off)",
  usage: `usage: roster maintenance on|off <instance-id> [--reason <text>] [--json]

Maintenance on: the instance turns "draining" (balancers send it nothing new) until maintenance off.
Through the host agent's local API (PUT /v1/agent/instances/<id>/maintenance).

  --reason <text>   why, kept by the agent (at most 256 characters)
`,
  options: { reason: { type: "string" } },
  async run(ctx, args, values) {
    const mode = args[0];
    if (mode !== "on" && mode !== "off") throw new UsageError(mode === undefined ? 'missing "on" or "off"' : `expected "on" or "off", got "${mode}"`, "maintenance");
    const id = instanceId(args, "maintenance", 1);
    const reason = values.reason;
    if (typeof reason === "string" && reason.length > 256) throw new UsageError("--reason: at most 256 characters", "maintenance");
    const body = { enable: mode === "on", ...(typeof reason === "string" ? { reason } : {}) };
    const { body: answer } = await request(ctx.agent, `v1/agent/instances/${encodeURIComponent(id)}/maintenance`, { method: "PUT", body, schema: Maintenance }).catch(withListHint(ctx));
    ctx.out(ctx.json ? jsonText(answer) : `maintenance ${answer.maintenance ? "on" : "off"} for instance ${answer.id}\n`);
    return EXIT.ok;
  },
};
