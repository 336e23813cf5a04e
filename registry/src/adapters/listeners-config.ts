/**
 * Config of the registry's two extra front doors, the DNS interface and the Consul-compatible read
 * API (docs/dns-and-consul.md). Both are off unless their `listen` is set. A factory because the
 * `host:port` schema lives in config.ts, which imports this file.
 */
import { Duration, NAME_PATTERN } from "roster-schemas";
import { z } from "zod";

const DOMAIN_RE = /^(?=.{1,200}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

export function listenerConfigs(HostPort: z.ZodType<string>) {
  const DnsConfig = z
    .object({
      /** "host:port" for UDP and TCP. DNS has no credentials: keep it on loopback or a private network. */
      listen: HostPort.optional(),
      /** The zone answered: `<service>.service.<domain>`. Lower case, no trailing dot. */
      domain: z
        .string()
        .transform((s) => s.toLowerCase().replace(/\.$/, ""))
        .pipe(z.string().regex(DOMAIN_RE, { error: 'expected a DNS domain like "roster" or "roster.example.internal"' }))
        .default("roster"),
      /** TTL of every record (and of a cached "no"); whole seconds. Default 0, as Consul: resolvers always ask again. */
      ttl: Duration.refine((ms) => ms <= 86_400_000, { error: "at most 1 day" }).default(0),
      /** Only passing instances; false also gives warning ones, as Consul does. */
      onlyPassing: z.boolean().default(false),
      /** Largest UDP answer whatever a client's EDNS buffer says (bytes; 1232 is the DNS Flag Day 2020 value). */
      maxUdpSize: z.number().int().min(512).max(4096).default(1232),
      /** UDP queries per second per source address (null: no limit); past it, dropped or answered TC. */
      rateLimit: z
        .union([z.null(), z.strictObject({ perSecond: z.number().min(1), burst: z.number().int().min(1) })])
        .default({ perSecond: 2000, burst: 4000 }),
      maxTcpConnections: z.number().int().min(1).max(100_000).default(1000),
      /** A TCP connection silent this long is closed. */
      tcpIdleTimeout: Duration.default(10_000),
    })
    .strict()
    .prefault({});

  const ConsulApiConfig = z
    .object({
      /** "host:port". Same tokens, rate limit and TLS as the HTTP API (`http.*`). */
      listen: HostPort.optional(),
      /** What /v1/agent/self and every answer call the datacenter. */
      datacenter: z.string().regex(NAME_PATTERN, { error: "expected a name like dc1" }).default("dc1"),
      /** This registry's node name in /v1/agent/self (default: roster-registry). */
      nodeName: z.string().regex(NAME_PATTERN, { error: "expected a name like roster-registry-1" }).default("roster-registry"),
    })
    .strict()
    .prefault({});
  return { DnsConfig, ConsulApiConfig };
}
