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
  ROSTER_UNAUTHORIZED: "the HTTP request carries no bearer token, or an unknown one",
  ROSTER_FORBIDDEN: "the bearer token lacks the scope (read or write) the route needs",
  ROSTER_RATE_LIMITED: "the client (token, else IP) sent more requests than http.rateLimit allows",
  ROSTER_PAYLOAD_TOO_LARGE: "the request body is larger than http.bodyLimit",
  ROSTER_TOO_MANY_STREAMS: "the registry already holds streams.maxOpen event streams",
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
  ROSTER_UNAUTHORIZED: 401,
  ROSTER_FORBIDDEN: 403,
  ROSTER_RATE_LIMITED: 429,
  ROSTER_PAYLOAD_TOO_LARGE: 413,
  ROSTER_TOO_MANY_STREAMS: 503,
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

export class PayloadTooLargeError extends RosterError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ROSTER_PAYLOAD_TOO_LARGE", message, options);
  }
}

/** Status of any error, mapped from its code (unknown codes → 500). */
export function httpStatusOf(err: unknown): number {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === "string" && code in HTTP_STATUS) return HTTP_STATUS[code as RegistryErrorCode];
  return 500;
}
