import { z } from "zod";
import { HttpTls } from "../http/auth.js";

const HOST_PORT_RE = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/**
 * `xds` in the registry's config (absent = no xDS server). Who may connect: the same bearer
 * tokens as the HTTP API's read scope (`http.auth`), sent as gRPC metadata `authorization`.
 */
export const XdsConfig = z.strictObject({
  /** host:port of the gRPC (ADS) listener; env ROSTER_XDS. Loopback unless you mean otherwise. */
  listen: z.string().refine((s) => HOST_PORT_RE.test(s) && Number(s.slice(s.lastIndexOf(":") + 1)) <= 65535, {
    error: 'expected "host:port" with a port 0-65535, e.g. "127.0.0.1:7702"',
  }),
  /** How `warning` instances are served: "healthy" (gRPC clients use only HEALTHY) or "degraded" (Envoy's DEGRADED). */
  warning: z.enum(["healthy", "degraded"]).default("healthy"),
  /** TLS for the listener: certFile + keyFile (+ caFile to require client certificates). */
  tls: HttpTls.optional(),
  /** Streams held open at most; past it a new one gets RESOURCE_EXHAUSTED. */
  maxStreams: z.number().int().min(1).max(1_000_000).default(10_000),
});
export type XdsConfig = z.output<typeof XdsConfig>;
