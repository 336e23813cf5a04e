import { RosterError } from "roster-schemas";

/**
 * Every error code the registry produces. The HTTP status of each code lives in ONE place
 * (`HTTP_STATUS` below); registry/README.md has the table of codes, meanings and what to do.
 */
export const ERROR_CODES = {
  ROSTER_CONFIG_INVALID: "the registry configuration failed validation",
  ROSTER_BAD_REQUEST: "an HTTP request had an invalid parameter, query or header",
  ROSTER_SERVICE_NOT_FOUND: "the registry has never seen this service",
  ROSTER_ROUTE_NOT_FOUND: "no such HTTP route",
  ROSTER_NOT_READY: "the registry is not connected to NATS or has not loaded the catalog yet",
  ROSTER_KV_WRITE_FAILED: "a catalog write to JetStream KV failed after every retry",
  ROSTER_STORE_LOST: "the catalog's JetStream buckets are gone or behind (a NATS node came back with an empty store)",
  ROSTER_UNAUTHORIZED: "the HTTP request carries no bearer token, or an unknown one",
  ROSTER_FORBIDDEN: "the bearer token lacks the scope (read or write) the route needs",
  ROSTER_RATE_LIMITED: "the client (token, else IP) sent more requests than http.rateLimit allows",
  ROSTER_PAYLOAD_TOO_LARGE: "the request body is larger than http.bodyLimit",
  ROSTER_TOO_MANY_STREAMS: "the registry already holds streams.maxOpen event streams",
  ROSTER_TOO_MANY_CLIENT_STREAMS: "this client (token, else IP) already holds streams.maxPerClient event streams",
  ROSTER_HOST_NOT_FOUND: "the registry knows no such host (nor a recently forgotten one)",
  ROSTER_CONSUL_READ_ONLY: "a write to the Consul-compatible API: Roster registers through its agents, never through this API",
  ROSTER_CONSUL_UNSUPPORTED: "a Consul API path Roster does not serve (KV, sessions, ACL, Connect, ...)",
  ROSTER_POLICY_INVALID: "a traffic policy sent to PUT /v1/services/:name/policy failed validation",
  ROSTER_POLICY_NOT_FOUND: "the service has no traffic policy",
  ROSTER_PRECONDITION_FAILED: "If-Match named another revision than the current one",
  ROSTER_OVERLOADED: "the registry is shedding bulk work (catalog bodies) so that health transitions go first",
  ROSTER_INTERNAL: "an unexpected error in the registry",
} as const;
export type RegistryErrorCode = keyof typeof ERROR_CODES;

/** HTTP status for each code: the one place where codes map to statuses. */
export const HTTP_STATUS: Record<RegistryErrorCode, number> = {
  ROSTER_CONFIG_INVALID: 500,
  ROSTER_BAD_REQUEST: 400,
  ROSTER_SERVICE_NOT_FOUND: 404,
  ROSTER_ROUTE_NOT_FOUND: 404,
  ROSTER_NOT_READY: 503,
  ROSTER_KV_WRITE_FAILED: 503,
  ROSTER_STORE_LOST: 503,
  ROSTER_UNAUTHORIZED: 401,
  ROSTER_FORBIDDEN: 403,
  ROSTER_RATE_LIMITED: 429,
  ROSTER_PAYLOAD_TOO_LARGE: 413,
  ROSTER_TOO_MANY_STREAMS: 503,
  ROSTER_TOO_MANY_CLIENT_STREAMS: 429,
  ROSTER_HOST_NOT_FOUND: 404,
  ROSTER_CONSUL_READ_ONLY: 405,
  ROSTER_CONSUL_UNSUPPORTED: 404,
  ROSTER_POLICY_INVALID: 400,
  ROSTER_POLICY_NOT_FOUND: 404,
  ROSTER_PRECONDITION_FAILED: 412,
  ROSTER_OVERLOADED: 503,
  ROSTER_INTERNAL: 500,
};

export class ConfigError extends RosterError {
  readonly issues: string[];
  constructor(issues: string[]) {
    super("ROSTER_CONFIG_INVALID", `invalid registry config: ${issues.join("; ")}`);
    this.issues = issues;
  }
}

export class TooManyStreamsError extends RosterError {
  constructor(max: number) {
    super("ROSTER_TOO_MANY_STREAMS", `the registry already holds ${max} event streams (streams.maxOpen): retry later, or use a blocking query`);
  }
}

export class TooManyClientStreamsError extends RosterError {
  constructor(max: number) {
    super("ROSTER_TOO_MANY_CLIENT_STREAMS", `this client already holds ${max} event streams (streams.maxPerClient): close one, or retry later`);
  }
}

export class OverloadedError extends RosterError {
  constructor(retryAfterS: number) {
    super("ROSTER_OVERLOADED", `the registry is overloaded and serves health transitions first: retry after ${retryAfterS} s`);
  }
}

export class HostNotFoundError extends RosterError {
  constructor(host: string) {
    super("ROSTER_HOST_NOT_FOUND", `host "${host}" is not known to the registry`);
  }
}

/** A write route reached without auth configured from beyond loopback. */
export class ForbiddenError extends RosterError {
  constructor(message: string) {
    super("ROSTER_FORBIDDEN", message);
  }
}

export class BadRequestError extends RosterError {
  constructor(message: string) {
    super("ROSTER_BAD_REQUEST", message);
  }
}

export class ServiceNotFoundError extends RosterError {
  constructor(service: string) {
    super("ROSTER_SERVICE_NOT_FOUND", `service "${service}" is not known to the registry`);
  }
}

export class RouteNotFoundError extends RosterError {
  constructor(method: string, url: string) {
    super("ROSTER_ROUTE_NOT_FOUND", `no route ${method} ${url}`);
  }
}

export class NotReadyError extends RosterError {
  constructor(message = "registry not ready") {
    super("ROSTER_NOT_READY", message);
  }
}

export class KvWriteError extends RosterError {
  constructor(key: string, options?: { cause?: unknown }) {
    super("ROSTER_KV_WRITE_FAILED", `catalog write of "${key}" failed after retries`, options);
  }
}

export class StoreLostError extends RosterError {
  constructor(reason: string, options?: { cause?: unknown }) {
    super("ROSTER_STORE_LOST", `catalog store lost: ${reason}`, options);
  }
}

export class ConsulReadOnlyError extends RosterError {
  constructor(method: string, path: string) {
    super("ROSTER_CONSUL_READ_ONLY", `${method} ${path}: the Consul-compatible API is read-only; Roster registers services through its agents (roster-agent), see docs/dns-and-consul.md`);
  }
}

export class ConsulUnsupportedError extends RosterError {
  constructor(path: string) {
    super("ROSTER_CONSUL_UNSUPPORTED", `${path} is not part of Roster's Consul-compatible API (no KV, sessions, ACL or Connect): see docs/dns-and-consul.md`);
  }
}

export class PayloadTooLargeError extends RosterError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ROSTER_PAYLOAD_TOO_LARGE", message, options);
  }
}

export class PolicyInvalidError extends RosterError {
  readonly issues: string[];
  constructor(issues: string[]) {
    super("ROSTER_POLICY_INVALID", `invalid policy: ${issues.join("; ")}`);
    this.issues = issues;
  }
}

export class PolicyNotFoundError extends RosterError {
  constructor(service: string) {
    super("ROSTER_POLICY_NOT_FOUND", `service "${service}" has no traffic policy`);
  }
}

export class PreconditionFailedError extends RosterError {
  constructor(service: string, expected: number, current: number) {
    super("ROSTER_PRECONDITION_FAILED", `policy of "${service}" is at revision ${current}, not ${expected} (If-Match)`);
  }
}

/** Status of any error, mapped from its code (unknown codes → 500). */
export function httpStatusOf(err: unknown): number {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === "string" && code in HTTP_STATUS) return HTTP_STATUS[code as RegistryErrorCode];
  return 500;
}
