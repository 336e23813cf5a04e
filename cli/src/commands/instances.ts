import { setTimeout as sleep } from "node:timers/promises";
import { Name, parseDuration } from "roster-schemas";
import { z } from "zod";
import { request } from "../client.js";
import { jsonText, type Command, type Context } from "../context.js";
import { table } from "../core/table.js";
import { CliError, EXIT, UsageError, formatError } from "../errors.js";
import { InstanceList, type Instance } from "../wire.js";

const Args = z.object({
  service: Name,
  status: z.enum(["passing", "any"], { error: 'expected "passing" or "any"' }).default("any"),
  zone: Name.optional(),
  tag: z.string().min(1).max(64).optional(),
  watch: z.boolean().default(false),
  wait: z
    .string()
    .refine((s) => (parseDuration(s) ?? 0) >= 1000, { error: 'expected a duration of at least 1s, like "60s" or "5m"' })
    .default("60s"),
});

const USAGE = `usage: roster instances <service> [--status passing|any] [--zone <zone>] [--tag <tag>] [--watch [--wait <dur>]] [--json]

Lists a service's instances (GET /v1/services/<service>/instances): id, address, zone, status,
host, weight, tags and checks. Exits 3 (ROSTER_SERVICE_NOT_FOUND) if the registry never saw it.

  --status passing|any   only passing instances, or all (default any)
  --zone <zone>          only instances in this zone
  --tag <tag>            only instances with this tag
  --watch                keep running: reprint whenever the service changes (the registry's blocking
                         queries, ?index=&wait=), until Ctrl-C or SIGTERM (exit 0). Survives a registry
                         restart: retries with a message on stderr.
  --wait <dur>           how long one blocking query may wait (default 60s; the registry caps it)
  --json                 a JSON array; with --watch one line {"index":N,"instances":[...]} per change
`;

function row(i: Instance): string[] {
  return [
    i.id,
    `${i.address}:${i.port}`,
    i.zone ?? "-",
    i.reason ? `${i.status} (${i.reason})` : i.status,
    i.host,
    String(i.weight),
    i.tags.length ? i.tags.join(",") : "-",
    i.checks.length ? i.checks.map((c) => `${c.id}:${c.status}`).join(",") : "-",
  ];
}

function render(list: Instance[]): string {
  return table(["ID", "ADDRESS", "ZONE", "STATUS", "HOST", "WEIGHT", "TAGS", "CHECKS"], list.map(row));
}

function query(a: z.output<typeof Args>, index?: number): string {
  const q = new URLSearchParams({ status: a.status });
  if (a.zone) q.set("zone", a.zone);
  if (a.tag) q.set("tag", a.tag);
  if (index !== undefined) {
    q.set("index", String(index));
    q.set("wait", a.wait);
  }
  return `v1/services/${encodeURIComponent(a.service)}/instances?${q}`;
}

function notFoundHint(err: unknown): never {
  if (err instanceof CliError && err.code === "ROSTER_SERVICE_NOT_FOUND") {
    throw new CliError(err.code, err.message, { hint: "list the known services with: roster services" });
  }
  throw err;
}

/** Errors worth retrying while watching: the registry restarting, or briefly not ready. */
function transient(err: unknown): boolean {
  return err instanceof CliError && (err.exit === EXIT.unreachable || err.code === "ROSTER_NOT_READY" || err.code === "ROSTER_CLI_HTTP");
}

async function watch(ctx: Context, a: z.output<typeof Args>): Promise<void> {
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const waitMs = parseDuration(a.wait)!;
  let index: number | undefined;
  let last = "";
  let failures = 0;
  try {
    while (!stop.signal.aborted) {
      try {
        const ans = await request(ctx.registry, query(a, index), {
          schema: InstanceList,
          signal: stop.signal,
          // The registry adds up to wait/16 of jitter; leave room for it and for a slow answer.
          ...(index !== undefined ? { timeoutMs: waitMs + waitMs / 8 + ctx.registry.timeoutMs } : {}),
        });
        const next = Number(ans.headers.get("x-roster-index"));
        if (!Number.isSafeInteger(next) || next < 0) {
          throw new CliError("ROSTER_CLI_BAD_RESPONSE", "the registry's answer has no valid X-Roster-Index header", { hint: "is it a Roster registry?" });
        }
        failures = 0;
        const text = ctx.json ? JSON.stringify({ index: next, instances: ans.body }) + "\n" : render(ans.body);
        // A new index that changes nothing printed (e.g. a check's output) is not worth a reprint.
        if (ctx.json ? text.replace(/^\{"index":\d+,/, "") !== last.replace(/^\{"index":\d+,/, "") : text !== last) {
          ctx.out(ctx.json ? text : `# ${new Date().toISOString()} index ${next}\n${text}`);
          last = text;
        }
        // Consul's rule: an index that goes backwards (a catalog rebuilt from scratch) starts over.
        index = index !== undefined && next < index ? 0 : next;
      } catch (err) {
        if (stop.signal.aborted) break;
        if (index === undefined || !transient(err)) notFoundHint(err);
        failures++;
        const delay = Math.min(500 * 2 ** (failures - 1), 5000);
        ctx.err(formatError(err as CliError).replace(/\n$/, `; retrying in ${delay} ms\n`));
        await sleep(delay, undefined, { signal: stop.signal }).catch(() => undefined);
      }
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

export const instances: Command = {
  name: "instances",
  server: "registry",
  synopsis: "list a service's instances; --watch follows changes",
  usage: USAGE,
  options: {
    status: { type: "string" },
    zone: { type: "string" },
    tag: { type: "string" },
    watch: { type: "boolean", short: "w" },
    wait: { type: "string" },
  },
  async run(ctx, args, values) {
    if (args.length === 0) throw new UsageError("missing <service>", "instances");
    if (args.length > 1) throw new UsageError(`unexpected argument "${args[1]}"`, "instances");
    const parsed = Args.safeParse({ ...values, service: args[0] });
    if (!parsed.success) {
      const i = parsed.error.issues[0]!;
      const what = i.path[0] === "service" ? "<service>" : `--${String(i.path[0])}`;
      throw new UsageError(`${what}: ${i.message}`, "instances");
    }
    const a = parsed.data;
    if (values.wait !== undefined && !a.watch) throw new UsageError("--wait only goes with --watch", "instances");
    if (a.watch) {
      await watch(ctx, a);
      return EXIT.ok;
    }
    const { body } = await request(ctx.registry, query(a), { schema: InstanceList }).catch(notFoundHint);
    ctx.out(ctx.json ? jsonText(body) : render(body));
    return EXIT.ok;
  },
};
