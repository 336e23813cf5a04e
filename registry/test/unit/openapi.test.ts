import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import SwaggerParser from "@apidevtools/swagger-parser";
import type { CatalogInstance } from "roster-schemas";
import type { FastifyInstance } from "fastify";
import { pino } from "pino";
import { z } from "zod";
import { CatalogMemory } from "../../src/adapters/catalog-memory.js";
import { buildHttp, type StatusBody } from "../../src/adapters/http.js";
import { docSchema, routesOf } from "../../src/adapters/openapi.js";

const silent = pino({ level: "silent" });
const rec = (id: string, over: Partial<CatalogInstance> = {}): CatalogInstance => ({
  id, service: "orders", host: "h1", address: "10.0.0.1", port: 8080, tags: ["blue"], meta: { team: "a" }, weight: 100,
  status: "passing", checks: [{ id: "http-0", type: "http", status: "passing", since: 1 }], epoch: 1, registeredAt: 1, updatedAt: 2, ...over,
});
/** Routes that are deliberately not in the API document: the docs themselves and the dashboard's files. */
const UNDOCUMENTED = /^\/(docs|ui)(\/|$)|^\/$/;

/** Routes of `app` that the OpenAPI document lacks or lists without summary, tags or a 200. */
async function undocumented(app: FastifyInstance): Promise<string[]> {
  const doc = (await app.inject({ method: "GET", url: "/docs/json" })).json() as {
    paths: Record<string, Record<string, { summary?: string; tags?: string[]; responses?: Record<string, unknown> }>>;
  };
  const out: string[] = [];
  for (const r of routesOf(app)) {
    if (r.method === "HEAD" || r.method === "OPTIONS") continue;
    if (UNDOCUMENTED.test(r.url)) {
      if (!r.hidden) out.push(`${r.method} ${r.url} (should be hidden)`);
      continue;
    }
    const op = doc.paths[r.url.replace(/:([A-Za-z_]+)/g, "{$1}")]?.[r.method.toLowerCase()];
    if (!op?.summary || !op.tags?.length || !op.responses?.["200"]) out.push(`${r.method} ${r.url}`);
  }
  return out;
}

describe("OpenAPI document", () => {
  const memory = new CatalogMemory();
  const status = (): StatusBody => ({
    revision: memory.revision, hosts: 1, lostHosts: 0, instances: 1, services: 1, selfPreservation: false,
    drops: { total: 0, byReason: {}, byKind: {} }, natsConnected: true, catalogLoaded: true,
    // Fields the status schema does not list: a response schema must not strip them.
    registryId: "r1", kv: { writes: 3 }, degraded: { reason: "x" },
  });
  const app = buildHttp({ catalog: memory, status, ready: () => true, maxBlockingWaitMs: 1000, logger: silent });

  before(async () => {
    memory.apply("orders", "a", 5, rec("a", { zone: "z1", reason: "agent-lost" }));
    await app.ready();
  });
  after(() => app.close());

  it("openapi - /docs/json is a valid OpenAPI 3 document", async () => {
    const r = await app.inject({ method: "GET", url: "/docs/json" });
    assert.equal(r.statusCode, 200);
    const doc = r.json() as { openapi: string };
    assert.match(doc.openapi, /^3\.0\./);
    // validate() dereferences in place: hand it a copy.
    await SwaggerParser.validate(structuredClone(doc) as never);
  });

  it("openapi - every route registered on the app is documented with a summary, tags and responses", async () => {
    assert.ok(routesOf(app).length >= 7, "the route list is collected");
    assert.deepEqual(await undocumented(app), [], "undocumented routes (give them schema: docSchema({...}))");
    const doc = (await app.inject({ method: "GET", url: "/docs/json" })).json() as { paths: Record<string, Record<string, { parameters?: Array<{ name: string; in: string }> }>> };
    for (const p of ["/healthz", "/readyz", "/v1/status", "/v1/services", "/v1/services/{name}/instances", "/v1/services/{name}/stream", "/v1/stream"]) {
      assert.ok(doc.paths[p]?.get, `${p} documented`);
    }
    const params = doc.paths["/v1/services/{name}/instances"]!.get!.parameters!;
    assert.deepEqual(params.map((p) => `${p.in}:${p.name}`).sort(), ["path:name", "query:index", "query:status", "query:tag", "query:wait", "query:zone"]);
  });

  it("openapi - the check catches a route added without a schema", async () => {
    const other = buildHttp({ catalog: new CatalogMemory(), status, ready: () => true, maxBlockingWaitMs: 1000, logger: silent });
    other.get("/v1/forgotten", async () => ({}));
    other.get("/v1/half", { schema: { summary: "no tags, no responses" } }, async () => ({}));
    try {
      assert.deepEqual(await undocumented(other), ["GET /v1/forgotten", "GET /v1/half"]);
    } finally {
      await other.close();
    }
  });

  it("openapi - response schemas document but never strip fields; zod keeps the error bodies", async () => {
    const s = (await app.inject({ method: "GET", url: "/v1/status" })).json();
    assert.equal(s.registryId, "r1");
    assert.deepEqual(s.kv, { writes: 3 });
    assert.deepEqual(s.degraded, { reason: "x" });
    const [i] = (await app.inject({ method: "GET", url: "/v1/services/orders/instances" })).json();
    assert.deepEqual(i.meta, { team: "a" });
    assert.deepEqual(i.checks, [{ id: "http-0", type: "http", status: "passing", since: 1 }]);
    assert.equal(i.reason, "agent-lost");
    assert.equal(i.zone, "z1");
    // ajv would say "querystring/status must be equal to one of the allowed values" with its own code.
    const bad = await app.inject({ method: "GET", url: "/v1/services/orders/instances?status=down&extra=1" });
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json().code, "ROSTER_BAD_REQUEST");
    assert.match(bad.json().message, /^invalid query: /);
  });

  it("openapi - the docs page and its assets are served from the package (offline)", async () => {
    const page = await app.inject({ method: "GET", url: "/docs/" });
    assert.equal(page.statusCode, 200);
    assert.match(page.headers["content-type"] as string, /html/);
    const js = await app.inject({ method: "GET", url: "/docs/static/swagger-ui-bundle.js" });
    assert.equal(js.statusCode, 200);
    assert.ok(js.body.length > 100_000);
  });

  it("openapi - docSchema turns zod schemas into the route schema (input side for requests)", () => {
    const s = docSchema({
      summary: "x", tags: ["t"],
      params: z.object({ n: z.string().regex(/^a$/) }),
      querystring: z.object({ i: z.string().transform(Number).optional() }),
      response: { 200: z.object({ ok: z.boolean() }), 204: { description: "nothing" } },
    }) as Record<string, Record<string, unknown>>;
    assert.deepEqual(s.params!.properties, { n: { type: "string", pattern: "^a$" } });
    assert.deepEqual(s.querystring!.properties, { i: { type: "string" } });
    assert.equal((s.response!["200"] as { additionalProperties?: unknown }).additionalProperties, undefined, "answers are documented open");
    assert.deepEqual(s.response!["204"], { description: "nothing", type: "null" });
  });
});
