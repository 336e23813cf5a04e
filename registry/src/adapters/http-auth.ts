/**
 * Who may call the registry's HTTP API, and how much: bearer tokens with read/write scopes
 * (the shared BearerAuth of roster-schemas), HTTPS, a rate limit per client and a body limit.
 * `installHttpSecurity` is called once from buildHttp, before any route, so every route —
 * including those other modules add later — is default-deny; a route opts out with
 * `config: { auth: "open" }` or names its scope with `config: { auth: "read" | "write" }`.
 */
import rateLimit from "@fastify/rate-limit";
import { BearerAuth, Duration, bearerAuthHook, type HttpAuthConfig } from "roster-schemas";
import { readFileSync } from "node:fs";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { z } from "zod";
import { PayloadTooLargeError } from "../errors.js";

/** A PEM file read at config time: a missing file is a config error naming the field. */
const PemFile = z.string().min(1).transform((file, ctx) => {
  try {
    return readFileSync(file);
  } catch (err) {
    ctx.addIssue({ code: "custom", message: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` });
    return z.NEVER;
  }
});

export const HttpTls = z.strictObject({
  certFile: PemFile,
  keyFile: PemFile,
  /** CA bundle for client certificates: when set, clients must present a certificate it signed. */
  caFile: PemFile.optional(),
});
export type HttpTls = z.output<typeof HttpTls>;

export const RateLimitConfig = z.strictObject({
  /** Requests allowed per client per window. */
  max: z.number().int().min(1),
  timeWindow: Duration.default(60_000),
});
export type RateLimitConfig = z.output<typeof RateLimitConfig>;

/** The resolved security settings handed to buildHttp (all optional: absent = off). */
export interface HttpSecurity {
  auth?: HttpAuthConfig | undefined;
  tls?: HttpTls | undefined;
  rateLimit?: RateLimitConfig | undefined;
  bodyLimit?: number | undefined;
}

/** Options for the `Fastify({...})` call: https and bodyLimit. */
export function httpServerOptions(sec: HttpSecurity | undefined): { https?: { cert: Buffer; key: Buffer; ca?: Buffer; requestCert?: boolean; rejectUnauthorized?: boolean }; bodyLimit?: number } {
  const out: ReturnType<typeof httpServerOptions> = {};
  if (sec?.bodyLimit !== undefined) out.bodyLimit = sec.bodyLimit;
  if (sec?.tls) {
    out.https = { cert: sec.tls.certFile, key: sec.tls.keyFile };
    if (sec.tls.caFile) Object.assign(out.https, { ca: sec.tls.caFile, requestCert: true, rejectUnauthorized: true });
  }
  return out;
}

/** Rate limit first (floods are cut before any token work), then auth. */
export function installHttpSecurity(app: FastifyInstance, sec: HttpSecurity | undefined): void {
  const openPaths = new Set(sec?.auth?.openPaths ?? ["/healthz", "/readyz"]);
  const auth = sec?.auth ? new BearerAuth({ tokens: sec.auth.tokens, openReads: sec.auth.openReads, openPaths: sec.auth.openPaths }) : null;
  // Rate-limit key: a configured token's name, else the client IP — never the header as sent, or
  // a flood could rotate made-up tokens to get a fresh budget each time.
  const clientKey = (req: FastifyRequest): string => {
    const h = req.headers.authorization;
    const token = auth && typeof h === "string" ? auth.identify(h) : null;
    return token ? `t:${token.name}` : `ip:${req.ip}`;
  };
  if (sec?.rateLimit) {
    const { max, timeWindow } = sec.rateLimit;
    // Not the plugin's `global` mode: its onRoute hook would miss routes declared before it loads.
    void app.register(rateLimit, {
      global: false,
      max,
      timeWindow,
      keyGenerator: clientKey,
      allowList: (req) => openPaths.has(req.url.split("?")[0] ?? ""),
      errorResponseBuilder: (_req, ctx) => ({
        statusCode: 429,
        code: "ROSTER_RATE_LIMITED",
        message: `rate limit exceeded (${ctx.max} requests per window): retry in ${ctx.after}`,
      }),
    });
    let limit: ((req: FastifyRequest, reply: unknown) => Promise<void>) | null = null;
    app.after(() => {
      limit = app.rateLimit() as unknown as typeof limit;
    });
    app.addHook("onRequest", async (req, reply) => {
      if (limit) await limit(req, reply);
    });
  }
  if (auth) app.addHook("onRequest", bearerAuthHook(auth));
}

/** Fastify's own 4xx errors that deserve a code of their own (called by the error handler). */
export function translateHttpError(err: unknown): unknown {
  const e = err as { code?: unknown; message?: string };
  if (e?.code === "FST_ERR_CTP_BODY_TOO_LARGE") return new PayloadTooLargeError(e.message ?? "request body too large", { cause: err });
  return err;
}
