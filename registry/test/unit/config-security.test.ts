import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError } from "../../src/errors.js";
import { configFromArgs, parseConfig } from "../../src/config.js";

function issues(input: unknown): string[] {
  try {
    parseConfig(input);
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.issues;
  }
  assert.fail("expected a config error");
}

describe("registry config: security settings", () => {
  it("config-security - NATS auth and TLS come from ROSTER_NATS_* env beside the URL", () => {
    const { overrides } = configFromArgs(["--nats", "nats://a:1,nats://b:2"], { ROSTER_NATS_NKEY_SEED_FILE: "/run/seed", ROSTER_NATS_TLS_CA: "/ca.pem" });
    assert.deepEqual(overrides.nats, { url: "nats://a:1,nats://b:2", nkeySeedFile: "/run/seed", tls: { caFile: "/ca.pem" } });
    const c = parseConfig({ nats: overrides.nats });
    assert.equal(c.nats.nkeySeedFile, "/run/seed");
  });

  it("config-security - HTTP tokens from env are added with their scopes", () => {
    const { overrides } = configFromArgs([], { ROSTER_HTTP_READ_TOKEN: "r".repeat(16), ROSTER_HTTP_WRITE_TOKEN: "w".repeat(16) });
    assert.deepEqual(overrides.httpTokens?.map((t) => t.scopes), [["read"], ["read", "write"]]);
    const c = parseConfig({ http: { auth: { tokens: overrides.httpTokens } } });
    assert.equal(c.http.auth?.tokens.length, 2);
  });

  it("config-security - bad settings name the field", () => {
    assert.deepEqual(issues({ nats: { user: "u" } }), ["nats.password: user needs password or passwordFile"]);
    assert.deepEqual(issues({ nats: { token: "t", credsFile: "/c" } }), ["nats.credsFile: only one NATS auth method may be set, found token and credsFile"]);
    assert.match(issues({ http: { tls: { certFile: "/nope.crt", keyFile: "/nope.key" } } }).join("\n"), /^http\.tls\.certFile: cannot read \/nope\.crt: ENOENT/);
    assert.deepEqual(issues({ http: { auth: { tokens: [] } } }), ["http.auth.tokens: expected at least one token (omit `auth` to turn auth off)"]);
    assert.deepEqual(issues({ http: { rateLimit: { max: 0 } } }).length, 1);
    assert.equal(parseConfig({}).http.bodyLimit, 1024 * 1024);
  });
});
