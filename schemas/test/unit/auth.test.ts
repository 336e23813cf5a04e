import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { nkeys } from "@nats-io/nats-core";
import { z } from "zod";
import {
  BearerAuth,
  HttpAuthConfig,
  NatsAuth,
  NatsAuthError,
  formatIssues,
  natsAuthFromEnv,
  natsAuthMethod,
  natsConnectOptions,
  parseNatsAuth,
  redactServers,
  redactUrl,
  splitServers,
} from "../../src/index.js";

const dir = mkdtempSync(join(tmpdir(), "roster-auth-unit-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const seed = new TextDecoder().decode(nkeys.createUser().getSeed());

function issuesOf(schema: z.ZodType, input: unknown): string[] {
  const r = schema.safeParse(input);
  assert.ok(!r.success, "expected a validation failure");
  return formatIssues(r.error);
}

describe("NATS auth settings", () => {
  it("nats-auth - servers: comma-separated strings and lists both split and trim", () => {
    assert.deepEqual(splitServers("nats://a:4222, nats://b:4222,,"), ["nats://a:4222", "nats://b:4222"]);
    assert.deepEqual(splitServers(["nats://a:1,nats://b:2", " nats://c:3 "]), ["nats://a:1", "nats://b:2", "nats://c:3"]);
    assert.deepEqual(natsConnectOptions("nats://a:1,nats://b:2").servers, ["nats://a:1", "nats://b:2"]);
  });

  it("nats-auth - credentials in URLs never reach a log line", () => {
    assert.equal(redactUrl("nats://alice:s3cret@h:4222"), "nats://***@h:4222");
    assert.equal(redactUrl("tls://tok@h:4222"), "tls://***@h:4222");
    assert.equal(redactUrl("nats://h:4222"), "nats://h:4222");
    assert.deepEqual(redactServers("nats://u:p@a:1,nats://b:2"), ["nats://***@a:1", "nats://b:2"]);
  });

  it("nats-auth - each method becomes an authenticator; TLS true or files become tls options", () => {
    const seedFile = join(dir, "u.nk");
    writeFileSync(seedFile, `${seed}\n`);
    const tokenFile = join(dir, "t");
    writeFileSync(tokenFile, "tok-from-file\n");
    const cases: [Record<string, unknown>, string][] = [
      [{ user: "u", password: "p" }, "user"],
      [{ token: "t" }, "token"],
      [{ tokenFile }, "token"],
      [{ nkeySeed: seed }, "nkey"],
      [{ nkeySeedFile: seedFile }, "nkey"],
    ];
    for (const [input, method] of cases) {
      const auth = parseNatsAuth(input);
      assert.equal(natsAuthMethod(auth), method);
      const o = natsConnectOptions("nats://h:4222", auth);
      assert.equal(typeof o.authenticator, "function", JSON.stringify(input));
    }
    // The token authenticator answers with the file's content, trimmed.
    const tok = natsConnectOptions("nats://h:1", parseNatsAuth({ tokenFile })).authenticator!();
    assert.deepEqual(tok, { auth_token: "tok-from-file" });
    const nk = natsConnectOptions("nats://h:1", parseNatsAuth({ nkeySeedFile: seedFile })).authenticator!("nonce") as { nkey: string; sig: string };
    assert.equal(nk.nkey, nkeys.fromSeed(new TextEncoder().encode(seed)).getPublicKey());
    assert.equal(natsConnectOptions("nats://h:1", {}).authenticator, undefined);
    assert.deepEqual(natsConnectOptions("nats://h:1", { tls: true }).tls, {});
    assert.deepEqual(natsConnectOptions("nats://h:1", { tls: { caFile: seedFile, handshakeFirst: true } }).tls, { caFile: seedFile, handshakeFirst: true });
  });

  it("nats-auth - a bad setting names the field", () => {
    assert.deepEqual(issuesOf(NatsAuth, { token: "t", nkeySeed: seed }), ["nkeySeed: only one NATS auth method may be set, found token and nkeySeed"]);
    assert.deepEqual(issuesOf(NatsAuth, { password: "p" }), ["user: a password needs a user"]);
    assert.deepEqual(issuesOf(NatsAuth, { user: "u" }), ["password: user needs password or passwordFile"]);
    assert.deepEqual(issuesOf(NatsAuth, { nkeySeed: "SUnope" }), ["nkeySeed: expected a user nkey seed (58 characters starting with SU)"]);
    assert.deepEqual(issuesOf(NatsAuth, { tls: { certFile: "c.pem" } }), ["tls.keyFile: a client certificate needs both certFile and keyFile"]);
    assert.deepEqual(issuesOf(NatsAuth, { pasword: "x" }), ['(root): Unrecognized key: "pasword"']);
    assert.throws(() => parseNatsAuth({ user: "u" }, "nats."), (e: unknown) => e instanceof NatsAuthError && e.code === "ROSTER_NATS_AUTH_INVALID" && e.issues[0] === "nats.password: user needs password or passwordFile");
  });

  it("nats-auth - an unreadable or malformed secret file names the field", () => {
    const missing = join(dir, "missing");
    const bad = join(dir, "bad.nk");
    writeFileSync(bad, "SUNOTASEED\n");
    const check = (auth: Record<string, unknown>, re: RegExp) =>
      assert.throws(() => natsConnectOptions("nats://h:1", parseNatsAuth(auth), "nats."), (e: unknown) => e instanceof NatsAuthError && re.test(e.issues.join("\n")));
    check({ nkeySeedFile: missing }, /^nats\.nkeySeedFile: cannot read .*ENOENT/);
    check({ nkeySeedFile: bad }, /^nats\.nkeySeedFile: not a valid user nkey seed/);
    check({ credsFile: bad }, /^nats\.credsFile: .* is not a NATS \.creds file/);
    check({ user: "u", passwordFile: missing }, /^nats\.passwordFile: cannot read/);
    check({ tls: { caFile: missing } }, /^nats\.tls\.caFile: cannot read/);
    assert.throws(() => natsConnectOptions(" , ", {}, "nats."), /nats\.url: expected at least one NATS server URL/);
  });

  it("nats-auth - env variables map onto the fields (only those set)", () => {
    assert.deepEqual(natsAuthFromEnv({}), {});
    assert.deepEqual(natsAuthFromEnv({ ROSTER_NATS_USER: "u", ROSTER_NATS_PASSWORD: "p", ROSTER_NATS_TLS: "true" }), { user: "u", password: "p", tls: true });
    assert.deepEqual(natsAuthFromEnv({ ROSTER_NATS_NKEY_SEED_FILE: "/s", ROSTER_NATS_TLS_CA: "/ca", ROSTER_NATS_TLS: "1" }), { nkeySeedFile: "/s", tls: { caFile: "/ca" } });
    assert.deepEqual(natsAuthFromEnv({ ROSTER_NATS_CREDS: "/c", ROSTER_NATS_TOKEN: "" }), { credsFile: "/c" });
  });
});

describe("HTTP bearer auth", () => {
  const auth = new BearerAuth({
    tokens: [
      { name: "reader", secret: "r".repeat(20), scopes: ["read"] },
      { name: "writer", secret: "w".repeat(20), scopes: ["read", "write"] },
    ],
  });
  const check = (method: string, path: string, token?: string, route?: "open" | "read" | "write") =>
    auth.check({ method, path, authorization: token === undefined ? undefined : `Bearer ${token}`, route });

  it("http-auth - probes are open; everything else needs a token of the right scope", () => {
    assert.deepEqual(check("GET", "/healthz"), { ok: true });
    assert.deepEqual(check("GET", "/readyz"), { ok: true });
    assert.equal(check("GET", "/v1/services").ok, false);
    assert.deepEqual(check("GET", "/v1/services", "r".repeat(20)), { ok: true, token: "reader" });
    const w = check("PUT", "/v1/x", "r".repeat(20));
    assert.ok(!w.ok && w.status === 403 && w.code === "ROSTER_FORBIDDEN" && /scope="write"/.test(w.challenge));
    assert.deepEqual(check("DELETE", "/v1/x", "w".repeat(20)), { ok: true, token: "writer" });
    const bad = check("GET", "/v1/services", "x".repeat(20));
    assert.ok(!bad.ok && bad.status === 401 && bad.code === "ROSTER_UNAUTHORIZED");
    assert.equal(auth.check({ method: "GET", path: "/v1/s", authorization: "Basic abc" }).ok, false);
  });

  it("http-auth - a route's own marker wins over the method", () => {
    assert.deepEqual(check("POST", "/v1/search", "r".repeat(20), "read"), { ok: true, token: "reader" });
    assert.equal(check("GET", "/v1/admin", "r".repeat(20), "write").ok, false);
    assert.deepEqual(check("POST", "/v1/anything", undefined, "open"), { ok: true });
  });

  it("http-auth - config: tokens need 16+ characters and exactly one source; scopes are read/write", () => {
    assert.deepEqual(issuesOf(HttpAuthConfig, { tokens: [{ token: "short" }] }), ["tokens[0].token: a token must be at least 16 characters"]);
    assert.deepEqual(issuesOf(HttpAuthConfig, { tokens: [{ scopes: ["read"] }] }), ["tokens[0].token: set exactly one of token or tokenFile"]);
    assert.deepEqual(issuesOf(HttpAuthConfig, { tokens: [{ token: "a".repeat(16), scopes: ["admin"] }] }), ['tokens[0].scopes[0]: expected "read" or "write"']);
    assert.match(issuesOf(HttpAuthConfig, { tokens: [{ tokenFile: join(dir, "nope") }] })[0]!, /^tokens\[0\]\.tokenFile: cannot read .*ENOENT/);
    const ok = HttpAuthConfig.parse({ tokens: [{ token: "a".repeat(16) }] });
    assert.deepEqual(ok, { tokens: [{ secret: "a".repeat(16), scopes: ["read"] }], openReads: false, openPaths: ["/healthz", "/readyz"] });
  });
});
