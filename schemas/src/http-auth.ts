/**
 * Bearer-token authorization for Roster's HTTP servers (the registry API and the agent's local
 * API share it): the config schema, a constant-time token check with read/write scopes, and an
 * `onRequest` hook typed structurally so this package needs no fastify dependency.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { z } from "zod";

export const HTTP_SCOPES = ["read", "write"] as const;
export type HttpScope = (typeof HTTP_SCOPES)[number];

const Secret = z.string().min(16, { error: "a token must be at least 16 characters" }).max(4096);

/** Reads a secret file at config time, so a missing file is a config error naming the field. */
export const SecretFile = z.string().min(1).transform((file, ctx) => {
  try {
    const text = readFileSync(file, "utf8").trim();
    const r = Secret.safeParse(text);
    if (r.success) return r.data;
    ctx.addIssue({ code: "custom", message: `${file}: ${r.error.issues[0]?.message ?? "invalid token"}` });
  } catch (err) {
    ctx.addIssue({ code: "custom", message: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` });
  }
  return z.NEVER;
});

/** One accepted token: inline (`token`) or from a file (`tokenFile`), with its scopes. */
export const HttpToken = z
  .strictObject({
    /** Shown in logs instead of the token. */
    name: z.string().min(1).max(64).optional(),
    token: Secret.optional(),
    tokenFile: SecretFile.optional(),
    scopes: z.array(z.enum(HTTP_SCOPES, { error: 'expected "read" or "write"' })).min(1).default(["read"]),
  })
  .superRefine((t, ctx) => {
    if ((t.token === undefined) === (t.tokenFile === undefined)) ctx.addIssue({ code: "custom", path: ["token"], message: "set exactly one of token or tokenFile" });
  })
  .transform((t) => ({ ...(t.name !== undefined ? { name: t.name } : {}), secret: (t.token ?? t.tokenFile)!, scopes: [...new Set(t.scopes)] }));
export type HttpToken = z.output<typeof HttpToken>;

/** Paths that never need a token (probes). */
export const DEFAULT_OPEN_PATHS = ["/healthz", "/readyz"];

export const HttpAuthConfig = z.strictObject({
  tokens: z.array(HttpToken).min(1, { error: "expected at least one token (omit `auth` to turn auth off)" }),
  /** GET/HEAD without a token are allowed (a wrong token is still refused). */
  openReads: z.boolean().default(false),
  /** Paths open to anyone; add "/metrics" to let Prometheus scrape without a token. */
  openPaths: z.array(z.string().startsWith("/", { error: 'expected a path starting with "/"' })).default(DEFAULT_OPEN_PATHS),
});
export type HttpAuthConfig = z.output<typeof HttpAuthConfig>;
export type HttpAuthConfigInput = z.input<typeof HttpAuthConfig>;

/** What a route says about auth, in its fastify `config: { auth }`: open, or the scope it needs. */
export type RouteAuth = "open" | HttpScope;

export type AuthDecision =
  | { ok: true; token?: string }
  | { ok: false; status: 401 | 403; code: "ROSTER_UNAUTHORIZED" | "ROSTER_FORBIDDEN"; message: string; challenge: string };

const digest = (s: string) => createHash("sha256").update(s).digest();
const READ_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** The token check. Tokens are compared as SHA-256 digests with timingSafeEqual, all of them every time. */
export class BearerAuth {
  private readonly tokens: { name: string; digest: Buffer; scopes: ReadonlySet<HttpScope> }[];
  readonly openReads: boolean;
  private readonly openPaths: ReadonlySet<string>;

  constructor(config: { tokens: readonly { name?: string; secret: string; scopes: readonly HttpScope[] }[]; openReads?: boolean; openPaths?: readonly string[] }) {
    this.tokens = config.tokens.map((t, i) => ({ name: t.name ?? `tokens[${i}]`, digest: digest(t.secret), scopes: new Set(t.scopes) }));
    this.openReads = config.openReads ?? false;
    this.openPaths = new Set(config.openPaths ?? DEFAULT_OPEN_PATHS);
  }

  /** The token named by an `Authorization: Bearer <token>` header, or null. */
  identify(authorization: string | undefined): { name: string; scopes: ReadonlySet<HttpScope> } | null {
    const m = /^Bearer[ \t]+(\S+)\s*$/i.exec(authorization ?? "");
    if (!m) return null;
    const d = digest(m[1]!);
    let found: (typeof this.tokens)[number] | null = null;
    for (const t of this.tokens) if (timingSafeEqual(d, t.digest) && !found) found = t;
    return found;
  }

  /** `route`: the route's own `auth` marker; default read for GET/HEAD/OPTIONS, write otherwise. */
  check(req: { method: string; path: string; authorization: string | undefined; route?: RouteAuth | undefined }): AuthDecision {
    if (req.route === "open" || this.openPaths.has(req.path)) return { ok: true };
    const need: HttpScope = req.route ?? (READ_METHODS.has(req.method.toUpperCase()) ? "read" : "write");
    if (req.authorization === undefined || req.authorization === "") {
      if (need === "read" && this.openReads) return { ok: true };
      return { ok: false, status: 401, code: "ROSTER_UNAUTHORIZED", message: "a bearer token is required", challenge: 'Bearer realm="roster"' };
    }
    const token = this.identify(req.authorization);
    if (!token) {
      return { ok: false, status: 401, code: "ROSTER_UNAUTHORIZED", message: "the bearer token is not valid", challenge: 'Bearer realm="roster", error="invalid_token"' };
    }
    if (!token.scopes.has(need)) {
      return {
        ok: false,
        status: 403,
        code: "ROSTER_FORBIDDEN",
        message: `token "${token.name}" lacks the "${need}" scope`,
        challenge: `Bearer realm="roster", error="insufficient_scope", scope="${need}"`,
      };
    }
    return { ok: true, token: token.name };
  }
}

/** The parts of a fastify request and reply the hook uses (structural: no fastify import here). */
export interface AuthHookRequest {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  routeOptions: { config?: unknown };
}
export interface AuthHookReply {
  code(status: number): AuthHookReply;
  header(name: string, value: string): AuthHookReply;
  send(body: unknown): AuthHookReply;
}

/**
 * A fastify `onRequest` hook: default-deny for every route (those added later too), unless the
 * path is open or the route says `config: { auth: "open" }`. Replies `{ code, message }` with
 * 401 + WWW-Authenticate or 403.
 */
export function bearerAuthHook(auth: BearerAuth) {
  return async (request: AuthHookRequest, reply: AuthHookReply): Promise<AuthHookReply | undefined> => {
    const config = request.routeOptions.config as { auth?: RouteAuth } | undefined;
    const header = request.headers.authorization;
    const d = auth.check({
      method: request.method,
      path: request.url.split("?")[0] ?? "",
      authorization: Array.isArray(header) ? header[0] : header,
      route: config?.auth,
    });
    if (d.ok) return undefined;
    return reply.code(d.status).header("www-authenticate", d.challenge).send({ code: d.code, message: d.message });
  };
}
