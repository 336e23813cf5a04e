/**
 * A Consul-compatible, read-only HTTP API on its own listener (`consulApi.listen`), so Consul's
 * paths never collide with Roster's own. It reads the same in-memory catalog as the HTTP API
 * (writer and standbys alike) and blocks on the same per-service revisions (X-Consul-Index).
 *
 * Who may call it: whoever the registry's HTTP API lets in — the same bearer tokens (sent as
 * `Authorization: Bearer`, `X-Consul-Token` or `?token=`), the same rate limit and TLS. Every
 * route needs the read scope; every write is refused with 405 ROSTER_CONSUL_READ_ONLY.
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { BearerAuth, formatIssues, parseDuration } from "roster-schemas";
import type { Logger } from "pino";
import { z } from "zod";
import { BadRequestError, ConsulReadOnlyError, ConsulUnsupportedError, NotReadyError } from "../../errors.js";
import type { CatalogInstance } from "roster-schemas";
import { BodyCache } from "../http/body-cache.js";
import type { CatalogReader } from "../store/catalog-memory.js";
import { httpServerOptions, installHttpSecurity, type HttpSecurity } from "../http/auth.js";
import { installErrorHandler } from "../http/error-handler.js";
import { defaultJitter, waitWhileListening } from "../http/blocking-wait.js";
import { allPassing, catalogService, consulNode, healthChecks, serviceEntry } from "./shapes.js";

export interface ConsulApiDeps {
  catalog: CatalogReader;
  /** False until the catalog is loaded: reads answer 503 ROSTER_NOT_READY meanwhile. */
  loaded: () => boolean;
  /** Connected to NATS and loaded: X-Consul-KnownLeader. */
  ready: () => boolean;
  datacenter: string;
  nodeName: string;
  /** Cap of a blocking query's `wait` (Consul's own cap is 10 minutes). */
  maxBlockingWaitMs: number;
  logger: Logger;
  security?: HttpSecurity;
  /** Extra wait added to a blocking query (default: random up to wait/16, as Consul does). */
  jitter?: (waitMs: number) => number;
  now?: () => number;
}

/** Consul's default wait for a blocking query without `wait`. */
const DEFAULT_WAIT_MS = 5 * 60_000;

const Name = z.string().min(1).max(256);
const Index = z.string().regex(/^\d{1,20}$/, { error: "expected a non-negative integer" }).transform(Number);
const Wait = z.string().transform((s, ctx) => {
  // Consul accepts a bare number of seconds too.
  const ms = /^\d+$/.test(s) ? Number(s) * 1000 : parseDuration(s);
  if (ms === null) {
    ctx.addIssue({ code: "custom", message: 'expected a duration like "30s", "5m" or "500ms"' });
    return z.NEVER;
  }
  return ms;
});
/** Consul's boolean query flags: present (empty), "1" or "true" mean true. */
const Flag = z
  .union([z.string(), z.array(z.string())])
  .optional()
  .transform((v) => {
    const s = Array.isArray(v) ? v[v.length - 1] : v;
    return s !== undefined && s !== "0" && s.toLowerCase() !== "false";
  });
const Tags = z
  .union([z.string(), z.array(z.string())])
  .optional()
  .transform((v) => (v === undefined ? [] : Array.isArray(v) ? v : [v]));

// Unknown parameters (stale, consistent, cached, near, dc, ns, node-meta, ...) are accepted and
// ignored, as Consul ignores what it does not know; `filter` is refused: silently ignoring a
// filter would return what the caller asked to exclude.
const BlockingQuery = z.looseObject({ index: Index.optional(), wait: Wait.optional(), filter: z.undefined({ error: "filter expressions are not supported by Roster's Consul API" }).optional() });
const ServiceQuery = BlockingQuery.extend({ tag: Tags, passing: Flag });

function parse<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new BadRequestError(`invalid ${what}: ${formatIssues(r.error).join("; ")}`);
  return r.data;
}

export function buildConsulApi(deps: ConsulApiDeps): FastifyInstance & { listenAddress?: string } {
  const parentLevel = deps.logger.levels.values[deps.logger.level] ?? 30;
  const app = Fastify({
    loggerInstance: deps.logger.child({}, { level: parentLevel > 40 ? deps.logger.level : "warn" }) as FastifyBaseLogger,
    return503OnClosing: true,
    frameworkErrors: (err, _req, reply) => void (reply as FastifyReply).code(400).send({ code: "ROSTER_BAD_REQUEST", message: err.message }),
    ...httpServerOptions(deps.security),
  }) as FastifyInstance & { listenAddress?: string };
  // Nothing here reads a body: any content type is read (up to bodyLimit) and dropped, so a write
  // with a malformed JSON body still gets its 405, not a parse error.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "buffer" }, (_req, _body, done) => done(null, undefined));
  const jitter = deps.jitter ?? defaultJitter;
  const closing = new AbortController();
  // Bodies encoded once per (known service, revision, query), as the HTTP API does.
  const bodies = new BodyCache();
  const json = (reply: FastifyReply, body: Buffer) => reply.type("application/json; charset=utf-8").send(body);
  app.addHook("preClose", async () => closing.abort());

  // Rate limit first (floods are cut before any token work), without its auth: ours follows.
  installHttpSecurity(app, deps.security ? { ...deps.security, auth: undefined } : undefined);
  const sec = deps.security?.auth;
  if (sec) {
    // Every route here is a read: a token needs the read scope, whatever the method (a write is
    // then told 405, not 403: there is nothing to be allowed to write).
    const auth = new BearerAuth({ tokens: sec.tokens, openReads: sec.openReads, openPaths: [] });
    app.addHook("onRequest", async (req: FastifyRequest, reply: FastifyReply) => {
      const d = auth.check({ method: "GET", path: req.url.split("?")[0] ?? "", authorization: presentedToken(req), route: "read" });
      if (!d.ok) return reply.code(d.status).header("www-authenticate", d.challenge).send({ code: d.code, message: d.message });
    });
  }

  installErrorHandler(app, {
    what: "the Consul API",
    onStatus: (status, reply) => {
      if (status === 405) void reply.header("Allow", "GET, HEAD");
    },
  });

  // Routes match GET only: any other method on any path is a write Consul would accept.
  app.setNotFoundHandler((request) => {
    const path = request.url.split("?")[0] ?? "";
    if (request.method !== "GET" && request.method !== "HEAD") throw new ConsulReadOnlyError(request.method, path);
    throw new ConsulUnsupportedError(path);
  });

  const meta = async (_req: FastifyRequest, reply: FastifyReply) => {
    void reply.header("X-Consul-KnownLeader", deps.ready() ? "true" : "false");
    void reply.header("X-Consul-LastContact", "0");
    void reply.header("X-Consul-Effective-Consistency", "leader");
    if (!deps.loaded()) throw new NotReadyError("catalog not loaded from KV yet");
  };

  /** Waits while the index is still `index` (Consul: until X-Consul-Index > index), at most `wait`. */
  const block = async (reply: FastifyReply, q: { index?: number | undefined; wait?: number | undefined }, current: () => number, waitFor: (after: number, ms: number, signal: AbortSignal) => Promise<boolean>) => {
    if (q.index === undefined || q.index === 0 || current() > q.index) return;
    const wanted = Math.min(q.wait ?? DEFAULT_WAIT_MS, deps.maxBlockingWaitMs);
    const after = q.index;
    await waitWhileListening(reply, closing.signal, (signal) => waitFor(after, wanted + jitter(wanted), signal));
  };
  // X-Consul-Index is never 0 (Consul's clients treat 0 as a broken server).
  const setIndex = (reply: FastifyReply, index: number) => void reply.header("X-Consul-Index", String(Math.max(1, index)));
  const serviceIndex = (name: string) => {
    const v = deps.catalog.service(name);
    return v.known ? v.revision : deps.catalog.revision;
  };
  const waitForService = (name: string) => (after: number, ms: number, signal: AbortSignal) => deps.catalog.waitForChange(name, after, ms, signal);
  const withTags = (tags: string[]) => (i: CatalogInstance) => tags.every((t) => i.tags.includes(t));

  app.get("/v1/catalog/services", { preHandler: meta }, async (req, reply) => {
    const q = parse(BlockingQuery, req.query, "query");
    await block(reply, q, () => deps.catalog.revision, (after, ms, signal) => waitForAny(deps.catalog, after, ms, signal));
    setIndex(reply, deps.catalog.revision);
    const out: Record<string, string[]> = {};
    for (const s of deps.catalog.services()) {
      if (s.instances.length === 0) continue; // Consul forgets a service with no instances
      out[s.name] = [...new Set(s.instances.flatMap((i) => i.tags))].sort();
    }
    return out;
  });

  /** The three per-service reads: parse, block until the index moves, read, set X-Consul-Index. */
  const readService = async <S extends typeof BlockingQuery>(req: FastifyRequest, reply: FastifyReply, query: S) => {
    const name = parse(Name, (req.params as { name: string }).name, "service name");
    const q = parse(query, req.query, "query");
    await block(reply, q, () => serviceIndex(name), waitForService(name));
    const view = deps.catalog.service(name);
    const index = view.known ? view.revision : deps.catalog.revision;
    setIndex(reply, index);
    return { name, q, view, index };
  };

  app.get("/v1/catalog/service/:name", { preHandler: meta }, async (req, reply) => {
    const { name, q, view, index } = await readService(req, reply, ServiceQuery);
    if (!view.known) return []; // Consul answers an unknown service with an empty list
    return json(reply, bodies.get(name, index, `catalog|${JSON.stringify(q.tag)}`, () => view.instances.filter(withTags(q.tag)).map((i) => catalogService(i, deps.datacenter, Math.max(1, index)))));
  });

  app.get("/v1/health/service/:name", { preHandler: meta }, async (req, reply) => {
    const { name, q, view, index } = await readService(req, reply, ServiceQuery);
    if (!view.known) return [];
    return json(
      reply,
      bodies.get(name, index, `health|${q.passing}|${JSON.stringify(q.tag)}`, () =>
        view.instances
          .filter(withTags(q.tag))
          .map((i) => serviceEntry(i, deps.datacenter, Math.max(1, index)))
          .filter((e) => !q.passing || allPassing(e.Checks)),
      ),
    );
  });

  app.get("/v1/health/checks/:name", { preHandler: meta }, async (req, reply) => {
    const { view, index } = await readService(req, reply, BlockingQuery);
    return view.instances.flatMap((i) => healthChecks(i, Math.max(1, index)).filter((c) => c.CheckID !== "serfHealth"));
  });

  app.get("/v1/catalog/nodes", { preHandler: meta }, async (req, reply) => {
    const q = parse(BlockingQuery, req.query, "query");
    await block(reply, q, () => deps.catalog.revision, (after, ms, signal) => waitForAny(deps.catalog, after, ms, signal));
    const index = Math.max(1, deps.catalog.revision);
    setIndex(reply, index);
    const nodes = new Map<string, ReturnType<typeof consulNode>>();
    for (const s of deps.catalog.services()) for (const i of s.instances) if (!nodes.has(i.host)) nodes.set(i.host, consulNode(i, deps.datacenter, index));
    return [...nodes.values()].sort((a, b) => a.Node.localeCompare(b.Node));
  });

  app.get("/v1/catalog/datacenters", async () => [deps.datacenter]);
  // A JSON string, as Consul sends it (fastify would send a returned string as raw text).
  app.get("/v1/status/leader", async (_req, reply) => reply.type("application/json").send(JSON.stringify(deps.ready() ? (app.listenAddress ?? "") : "")));
  app.get("/v1/status/peers", async () => (app.listenAddress ? [app.listenAddress] : []));
  app.get("/v1/agent/self", async () => ({
    Config: {
      Datacenter: deps.datacenter,
      PrimaryDatacenter: deps.datacenter,
      NodeName: deps.nodeName,
      NodeID: "",
      Server: true,
      Revision: "roster",
      Version: "1.15.0",
    },
    Member: { Name: deps.nodeName, Addr: app.listenAddress?.replace(/:\d+$/, "") ?? "", Port: 0, Tags: { dc: deps.datacenter, role: "consul" }, Status: 1 },
    Meta: { "roster-registry": "true" },
  }));

  return app;
}

/** The token a Consul client presents: Authorization: Bearer, X-Consul-Token, or ?token=. */
function presentedToken(req: FastifyRequest): string | undefined {
  const h = req.headers.authorization;
  if (typeof h === "string" && h !== "") return h;
  const x = req.headers["x-consul-token"];
  if (typeof x === "string" && x !== "") return `Bearer ${x}`;
  const t = (req.query as Record<string, unknown> | undefined)?.token;
  if (typeof t === "string" && t !== "") return `Bearer ${t}`;
  return undefined;
}

/** Resolves true once the catalog revision passes `after` (any service), false after `ms` or on abort. */
function waitForAny(catalog: CatalogReader, after: number, ms: number, signal: AbortSignal): Promise<boolean> {
  if (catalog.revision > after) return Promise.resolve(true);
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (v: boolean) => {
      clearTimeout(timer);
      off();
      signal.removeEventListener("abort", onAbort);
      resolve(v);
    };
    const off = catalog.onChange(() => {
      if (catalog.revision > after) done(true);
    });
    const onAbort = () => done(false);
    const timer = setTimeout(() => done(false), ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
