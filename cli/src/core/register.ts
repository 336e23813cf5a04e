import { Address, Meta, Name, Port, Tags, Weight, formatIssues, parseDuration } from "roster-schemas";
import { z } from "zod";

/** The flags of `roster register` as parseArgs gives them (strings, repeatable ones as arrays). */
export interface RegisterFlags {
  service?: string;
  id?: string;
  address?: string;
  port?: string;
  tag?: string[];
  meta?: string[];
  weight?: string;
  "check-http"?: string;
  "check-tcp"?: string;
  "check-ttl"?: string;
  "check-interval"?: string;
  "check-timeout"?: string;
}

const Int = (inner: z.ZodNumber) =>
  z
    .string()
    .regex(/^\d+$/, { error: "expected a whole number" })
    .transform(Number)
    .pipe(inner);

const DurationText = z.string().refine((s) => parseDuration(s) !== null, { error: 'expected a duration like "10s" or "500ms"' });

const MetaPairs = z
  .array(z.string().regex(/^[^=]+=/, { error: 'expected key=value, e.g. "version=1.4.2"' }))
  .transform((pairs) => Object.fromEntries(pairs.map((p) => [p.slice(0, p.indexOf("=")), p.slice(p.indexOf("=") + 1)])))
  .pipe(Meta);

const HostPort = z.string().regex(/^(\[[0-9a-fA-F:]+\]|[^\s:]+):\d{1,5}$/, { error: 'expected host:port, e.g. "127.0.0.1:8080"' });

const Flags = z.object({
  service: Name,
  id: Name.optional(),
  address: Address.optional(),
  port: Int(Port),
  tag: Tags.optional(),
  meta: MetaPairs.optional(),
  weight: Int(Weight).optional(),
  "check-http": z.url({ protocol: /^https?$/, error: "expected an http:// or https:// URL" }).optional(),
  "check-tcp": HostPort.optional(),
  "check-ttl": DurationText.optional(),
  "check-interval": DurationText.optional(),
  "check-timeout": DurationText.optional(),
});

export type BuildResult = { ok: true; body: Record<string, unknown> } | { ok: false; issues: string[] };

/**
 * The body of the agent's `PUT /v1/agent/instances` (a `services[]` entry of its config) from the
 * flags. The agent validates the body again, with its full schema; this catches typos before the call.
 */
export function registerBody(flags: RegisterFlags): BuildResult {
  const r = Flags.safeParse(flags);
  if (!r.success) return { ok: false, issues: formatIssues(r.error).map((i) => `--${i}`) };
  const f = r.data;
  const timing = {
    ...(f["check-interval"] !== undefined ? { interval: f["check-interval"] } : {}),
    ...(f["check-timeout"] !== undefined ? { timeout: f["check-timeout"] } : {}),
  };
  const checks: Array<Record<string, unknown>> = [];
  if (f["check-http"] !== undefined) checks.push({ type: "http", url: f["check-http"], ...timing });
  if (f["check-tcp"] !== undefined) {
    const s = f["check-tcp"];
    const i = s.lastIndexOf(":");
    checks.push({ type: "tcp", host: s.slice(0, i).replace(/^\[(.*)\]$/, "$1"), port: Number(s.slice(i + 1)), ...timing });
  }
  if (f["check-ttl"] !== undefined) checks.push({ type: "ttl", ttl: f["check-ttl"] });
  if (checks.length === 0 && Object.keys(timing).length > 0) {
    return { ok: false, issues: ["--check-interval/--check-timeout: only with --check-http or --check-tcp"] };
  }
  const body: Record<string, unknown> = {
    name: f.service,
    ...(f.id !== undefined ? { id: f.id } : {}),
    port: f.port,
    ...(f.address !== undefined ? { address: f.address } : {}),
    ...(f.tag !== undefined ? { tags: f.tag } : {}),
    ...(f.meta !== undefined ? { meta: f.meta } : {}),
    ...(f.weight !== undefined ? { weight: f.weight } : {}),
    ...(checks.length > 0 ? { checks } : {}),
  };
  return { ok: true, body };
}
