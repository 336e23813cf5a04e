// The registry's HTTP API over real HTTPS (a self-signed certificate made by openssl in the
// test): bearer tokens with read/write scopes, default-deny for routes added after buildHttp,
// a body limit (413) and a rate limit (429), each with its ROSTER_ code.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { selfSignedCert } from "roster-testkit";
import type { FastifyInstance } from "fastify";
import { pino } from "pino";
import { CatalogMemory } from "../../src/adapters/catalog-memory.js";
import { buildHttp, type StatusBody } from "../../src/adapters/http.js";
import { parseConfig } from "../../src/config.js";

const silent = pino({ level: "silent" });
const READ = "read-token-0123456789abcdef";
const WRITE = "write-token-0123456789abcdef";

interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: { code?: string; message?: string } & Record<string, unknown>;
}

function call(base: string, ca: Buffer, method: string, path: string, opts: { token?: string; body?: string } = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    if (opts.body !== undefined) headers["content-type"] = "application/json";
    const req = request(new URL(path, base), { method, ca, headers }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? (JSON.parse(text) as Res["body"]) : {} }));
    });
    req.on("error", reject);
    req.end(opts.body);
  });
}

function statusFn(memory: CatalogMemory) {
  return (): StatusBody => ({
    revision: memory.revision, hosts: 0, lostHosts: 0, instances: 0, services: 0, selfPreservation: false,
    drops: { total: 0, byReason: {}, byKind: {} }, natsConnected: true, catalogLoaded: true,
  });
}

/** buildHttp with the security part of a parsed registry config, plus routes added afterwards (as other modules do). */
async function serve(httpConfig: Record<string, unknown>): Promise<{ app: FastifyInstance; base: string }> {
  const config = parseConfig({ http: { listen: "127.0.0.1:0", ...httpConfig } });
  const memory = new CatalogMemory();
  const app = buildHttp({ catalog: memory, status: statusFn(memory), ready: () => true, maxBlockingWaitMs: 1000, logger: silent, security: config.http });
  app.post("/v1/echo", async (req) => ({ echoed: req.body }));
  app.get("/v1/later", async () => ({ later: true }));
  app.get("/v1/public", { config: { auth: "open" } }, async () => ({ public: true }));
  const base = await app.listen({ host: "127.0.0.1", port: 0 });
  return { app, base };
}

describe("registry HTTP security (HTTPS, real server)", () => {
  let dir: string;
  let ca: Buffer;
  let tls: { certFile: string; keyFile: string };
  let app: FastifyInstance;
  let base: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "roster-http-sec-"));
    tls = selfSignedCert(dir);
    ca = readFileSync(tls.certFile);
    writeFileSync(join(dir, "write.token"), `${WRITE}\n`);
    ({ app, base } = await serve({
      tls,
      bodyLimit: 1024,
      auth: { tokens: [{ name: "reader", token: READ, scopes: ["read"] }, { name: "writer", tokenFile: join(dir, "write.token"), scopes: ["read", "write"] }] },
    }));
  });
  after(async () => {
    await app?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("security - serves HTTPS; probes stay open without a token", async () => {
    assert.match(base, /^https:\/\//);
    assert.equal((await call(base, ca, "GET", "/healthz")).status, 200);
    assert.equal((await call(base, ca, "GET", "/readyz")).status, 200);
  });

  it("security - no token or a wrong token: 401 ROSTER_UNAUTHORIZED with WWW-Authenticate: Bearer", async () => {
    const none = await call(base, ca, "GET", "/v1/services");
    assert.equal(none.status, 401);
    assert.equal(none.body.code, "ROSTER_UNAUTHORIZED");
    assert.match(String(none.headers["www-authenticate"]), /^Bearer realm="roster"/);
    const wrong = await call(base, ca, "GET", "/v1/services", { token: "not-a-token-not-a-token" });
    assert.equal(wrong.status, 401);
    assert.match(String(wrong.headers["www-authenticate"]), /error="invalid_token"/);
    // The token's prefix is not enough.
    assert.equal((await call(base, ca, "GET", "/v1/services", { token: READ.slice(0, -1) })).status, 401);
  });

  it("security - a read token reads; writing with it is 403 ROSTER_FORBIDDEN", async () => {
    const r = await call(base, ca, "GET", "/v1/services", { token: READ });
    assert.equal(r.status, 200);
    const w = await call(base, ca, "POST", "/v1/echo", { token: READ, body: '{"a":1}' });
    assert.equal(w.status, 403);
    assert.equal(w.body.code, "ROSTER_FORBIDDEN");
    assert.match(String(w.headers["www-authenticate"]), /insufficient_scope/);
  });

  it("security - a write token (from a file) writes", async () => {
    const w = await call(base, ca, "POST", "/v1/echo", { token: WRITE, body: '{"a":1}' });
    assert.equal(w.status, 200);
    assert.deepEqual(w.body, { echoed: { a: 1 } });
  });

  it("security - routes added after buildHttp are default-deny unless marked open; unknown routes too", async () => {
    assert.equal((await call(base, ca, "GET", "/v1/later")).status, 401);
    assert.equal((await call(base, ca, "GET", "/v1/later", { token: READ })).status, 200);
    assert.equal((await call(base, ca, "GET", "/v1/public")).status, 200);
    assert.equal((await call(base, ca, "DELETE", "/v1/nothing-here", { token: READ })).status, 403);
    assert.equal((await call(base, ca, "GET", "/v1/nothing-here")).status, 401);
  });

  it("security - an oversized body is 413 ROSTER_PAYLOAD_TOO_LARGE (and 401 before any parsing without a token)", async () => {
    const big = JSON.stringify({ pad: "x".repeat(2048) });
    const r = await call(base, ca, "POST", "/v1/echo", { token: WRITE, body: big });
    assert.equal(r.status, 413);
    assert.equal(r.body.code, "ROSTER_PAYLOAD_TOO_LARGE");
    assert.equal((await call(base, ca, "POST", "/v1/echo", { body: big })).status, 401);
  });

  it("security - openReads lets GETs through without a token, never a wrong token or a write", async () => {
    const s = await serve({ tls, auth: { tokens: [{ token: WRITE, scopes: ["read", "write"] }], openReads: true } });
    try {
      assert.equal((await call(s.base, ca, "GET", "/v1/services")).status, 200);
      assert.equal((await call(s.base, ca, "GET", "/v1/services", { token: "wrong-wrong-wrong-wrong" })).status, 401);
      assert.equal((await call(s.base, ca, "POST", "/v1/echo", { body: "{}" })).status, 401);
      assert.equal((await call(s.base, ca, "POST", "/v1/echo", { token: WRITE, body: "{}" })).status, 200);
    } finally {
      await s.app.close();
    }
  });

  it("security - with tls.caFile, a client without a certificate signed by it is refused", async () => {
    const client = selfSignedCert(dir, "client");
    const s = await serve({ tls: { ...tls, caFile: client.certFile } });
    try {
      await assert.rejects(call(s.base, ca, "GET", "/healthz"));
      const ok = await new Promise<number>((resolve, reject) => {
        const req = request(new URL("/healthz", s.base), { ca, cert: readFileSync(client.certFile), key: readFileSync(client.keyFile) }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on("error", reject);
        req.end();
      });
      assert.equal(ok, 200);
    } finally {
      await s.app.close();
    }
  });

  it("security - the rate limit is per token (else per IP): 429 ROSTER_RATE_LIMITED with Retry-After", async () => {
    const s = await serve({ tls, rateLimit: { max: 5, timeWindow: "1m" }, auth: { tokens: [{ token: READ }, { token: WRITE, scopes: ["read", "write"] }] } });
    try {
      for (let i = 0; i < 5; i++) assert.equal((await call(s.base, ca, "GET", "/v1/services", { token: READ })).status, 200, `request ${i + 1}`);
      const limited = await call(s.base, ca, "GET", "/v1/services", { token: READ });
      assert.equal(limited.status, 429);
      assert.equal(limited.body.code, "ROSTER_RATE_LIMITED");
      assert.ok(Number(limited.headers["retry-after"]) > 0, `retry-after: ${String(limited.headers["retry-after"])}`);
      // Another client has its own budget; probes are never limited.
      assert.equal((await call(s.base, ca, "GET", "/v1/services", { token: WRITE })).status, 200);
      for (let i = 0; i < 7; i++) assert.equal((await call(s.base, ca, "GET", "/healthz")).status, 200);
      // Made-up tokens do not buy a fresh budget: they all count against the client's IP.
      for (let i = 0; i < 5; i++) assert.equal((await call(s.base, ca, "GET", "/v1/services", { token: `made-up-token-${i}-xxxxxxxx` })).status, 401);
      assert.equal((await call(s.base, ca, "GET", "/v1/services", { token: "made-up-token-6-xxxxxxxx" })).status, 429);
      // Routes added after buildHttp are limited too.
      for (let i = 0; i < 4; i++) await call(s.base, ca, "GET", "/v1/later", { token: WRITE });
      assert.equal((await call(s.base, ca, "GET", "/v1/later", { token: WRITE })).status, 429);
    } finally {
      await s.app.close();
    }
  });
});
