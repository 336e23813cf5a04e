import { formatIssues } from "roster-schemas";
import type { z } from "zod";
import { CliError, EXIT } from "./errors.js";
import { ErrorBody } from "./wire.js";

/** Which server, for messages and hints. */
export interface Target {
  /** "registry" or "agent" */
  kind: "registry" | "agent";
  baseUrl: string;
  token: string | undefined;
  timeoutMs: number;
}

const HINT: Record<Target["kind"], string> = {
  registry: "set --registry or ROSTER_REGISTRY_URL",
  agent: "set --agent or ROSTER_AGENT_URL",
};

// Node's fetch wraps socket errors as `TypeError: fetch failed` with the system error in `cause`.
const SOCKET_ERRORS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host name lookup failed",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  UND_ERR_SOCKET: "the connection closed unexpectedly",
};

function socketReason(err: unknown): string {
  let e: unknown = err;
  for (let depth = 0; depth < 4 && e; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return SOCKET_ERRORS[code] ?? code;
    e = (e as { cause?: unknown }).cause;
  }
  return (err as Error).message ?? String(err);
}

export interface Answer<T> {
  status: number;
  headers: Headers;
  body: T;
}

export interface RequestOptions<S extends z.ZodType> {
  method?: "GET" | "PUT" | "DELETE";
  body?: unknown;
  /** Statuses whose body is parsed with `schema` rather than as an error (e.g. 503 for /readyz). */
  okStatuses?: number[];
  /** Overrides the target's timeout (blocking queries wait longer). */
  timeoutMs?: number;
  /** Aborts the request (Ctrl-C during --watch); the caller decides what an abort means. */
  signal?: AbortSignal;
  schema: S;
}

/**
 * One HTTP call with the bearer token, a timeout, and the answer checked with zod. Every failure
 * is a CliError: unreachable, timeout, a Roster error body (code passed through), another HTTP
 * error, or an answer that does not match `schema`.
 */
export async function request<S extends z.ZodType>(target: Target, path: string, opts: RequestOptions<S>): Promise<Answer<z.output<S>>> {
  const method = opts.method ?? "GET";
  const url = new URL(path, target.baseUrl.endsWith("/") ? target.baseUrl : `${target.baseUrl}/`);
  const headers: Record<string, string> = { accept: "application/json" };
  if (target.token) headers.authorization = `Bearer ${target.token}`;
  if (opts.body !== undefined) headers["content-type"] = "application/json";
  const timeoutMs = opts.timeoutMs ?? target.timeoutMs;
  const signals = [AbortSignal.timeout(timeoutMs), ...(opts.signal ? [opts.signal] : [])];
  let res: Response;
  let text: string;
  try {
    res = await fetch(url, {
      method,
      headers,
      ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
      signal: AbortSignal.any(signals),
    });
    text = await res.text();
  } catch (err) {
    if (opts.signal?.aborted) throw err;
    if ((err as Error).name === "TimeoutError") {
      throw new CliError("ROSTER_CLI_TIMEOUT", `no answer from the ${target.kind} at ${target.baseUrl} within ${timeoutMs} ms (${method} ${url.pathname})`, {
        exit: EXIT.unreachable,
        hint: `raise --timeout, or ${HINT[target.kind]}`,
        cause: err,
      });
    }
    throw new CliError("ROSTER_CLI_UNREACHABLE", `cannot reach the ${target.kind} at ${target.baseUrl}: ${socketReason(err)}`, {
      exit: EXIT.unreachable,
      hint: HINT[target.kind],
      cause: err,
    });
  }
  const what = `${method} ${url.pathname} on the ${target.kind} at ${target.baseUrl}`;
  let json: unknown = undefined;
  let jsonOk = false;
  try {
    json = text === "" ? undefined : JSON.parse(text);
    jsonOk = text !== "";
  } catch {
    jsonOk = false;
  }
  if (res.ok || opts.okStatuses?.includes(res.status)) {
    if (!jsonOk) throw new CliError("ROSTER_CLI_BAD_RESPONSE", `${what} answered HTTP ${res.status} with a body that is not JSON`, { hint: `is it a Roster ${target.kind}? ${HINT[target.kind]}` });
    const r = opts.schema.safeParse(json);
    if (!r.success) {
      throw new CliError("ROSTER_CLI_BAD_RESPONSE", `${what} answered something unexpected`, {
        hint: `is it a Roster ${target.kind} of a compatible version? ${HINT[target.kind]}`,
        issues: formatIssues(r.error).slice(0, 10),
      });
    }
    return { status: res.status, headers: res.headers, body: r.data };
  }
  const e = ErrorBody.safeParse(json);
  if (e.success) {
    const auth = res.status === 401 || res.status === 403;
    throw new CliError(e.data.code, e.data.message, {
      issues: e.data.issues ?? [],
      ...(auth ? { hint: "set --token or ROSTER_TOKEN" } : {}),
    });
  }
  const auth = res.status === 401 || res.status === 403;
  throw new CliError("ROSTER_CLI_HTTP", `${what} answered HTTP ${res.status}${text ? `: ${text.slice(0, 200).replace(/\s+/g, " ")}` : ""}`, {
    hint: auth ? "set --token or ROSTER_TOKEN" : HINT[target.kind],
  });
}
