import { request } from "../client.js";
import { jsonText, type Command } from "../context.js";
import { assessHealth } from "../core/health.js";
import { keyValues } from "../core/table.js";
import { CliError, EXIT, UsageError, formatError } from "../errors.js";
import { CatalogDump, Readyz, Status } from "../wire.js";

export const catalog: Command = {
  name: "catalog",
  server: "registry",
  synopsis: "catalog dump: the whole catalog as JSON",
  usage: `usage: roster catalog dump

Prints the whole catalog (GET /v1/catalog) as one JSON document on stdout:
{ "revision": N, "services": { "<name>": [instances...] } }, services and instances sorted, so two
dumps of the same catalog are identical (diff them, keep them as a record).
`,
  options: {},
  async run(ctx, args) {
    if (args[0] !== "dump") throw new UsageError(args[0] === undefined ? 'missing subcommand "dump"' : `unknown subcommand "${args[0]}" (expected "dump")`, "catalog");
    if (args.length > 1) throw new UsageError(`unexpected argument "${args[1]}"`, "catalog");
    const { body } = await request(ctx.registry, "v1/catalog", { schema: CatalogDump });
    ctx.out(jsonText(body));
    return EXIT.ok;
  },
};

const yesNo = (b: boolean) => (b ? "yes" : "no");

export const health: Command = {
  name: "health",
  server: "registry",
  synopsis: "registry readiness and status; exit 5 when not ready or degraded",
  usage: `usage: roster health [--json]

Reads the registry's /readyz and /v1/status. Exit 0 when ready and not degraded, 5 when not ready
(NATS down, catalog not loaded) or degraded (self-preservation on), with the reasons on stderr.

  --json   { "healthy", "problems", "readyz", "status" } on stdout (exit code as above)
`,
  options: {},
  async run(ctx, args) {
    if (args.length > 0) throw new UsageError(`unexpected argument "${args[0]}"`, "health");
    const [readyz, status] = await Promise.all([
      request(ctx.registry, "readyz", { schema: Readyz, okStatuses: [503] }),
      request(ctx.registry, "v1/status", { schema: Status }),
    ]);
    const r = readyz.body;
    const s = status.body;
    const verdict = assessHealth({ ...r, selfPreservation: s.selfPreservation, lostHosts: s.lostHosts });
    if (ctx.json) {
      ctx.out(jsonText({ healthy: verdict.healthy, problems: verdict.problems, readyz: r, status: s }));
    } else {
      ctx.out(
        keyValues([
          ["ready", yesNo(r.ready)],
          ["nats connected", yesNo(r.natsConnected)],
          ["catalog loaded", yesNo(r.catalogLoaded)],
          ["self-preservation", yesNo(s.selfPreservation)],
          ["revision", String(s.revision)],
          ["hosts", `${s.hosts} (${s.lostHosts} lost)`],
          ["services", String(s.services)],
          ["instances", String(s.instances)],
          ["dropped messages", String(s.drops.total)],
        ]),
      );
    }
    if (verdict.healthy) return EXIT.ok;
    ctx.err(formatError(new CliError("ROSTER_CLI_UNHEALTHY", `the registry at ${ctx.registry.baseUrl} is not healthy: ${verdict.problems.join("; ")}`)));
    return EXIT.unhealthy;
  },
};
