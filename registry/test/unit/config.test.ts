import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { configFromArgs, parseConfig, splitHostPort } from "../../src/config.js";
import { ConfigError, ERROR_CODES, HTTP_STATUS } from "../../src/errors.js";

describe("registry config", () => {
  it("config - defaults", () => {
    const c = parseConfig({});
    assert.equal(c.nats.url, "nats://127.0.0.1:4222");
    assert.equal(c.http.listen, "127.0.0.1:7700");
    assert.equal(c.heartbeatTimeoutMultiplier, 3);
    assert.equal(c.deregisterAfter, 60_000);
    assert.deepEqual(c.selfPreservation, { threshold: 0.3, minHosts: 3, window: 15_000 });
    assert.equal(c.presenceInterval, 1000);
    assert.equal(c.kvReplicas, "auto");
    assert.equal(c.maxBlockingWait, 300_000);
  });

  it("config - durations parse from strings", () => {
    const c = parseConfig({ deregisterAfter: "2s", presenceInterval: "250ms", maxBlockingWait: "1m" });
    assert.equal(c.deregisterAfter, 2000);
    assert.equal(c.presenceInterval, 250);
    assert.equal(c.maxBlockingWait, 60_000);
  });

  it("config - a bad field fails naming the field", () => {
    for (const [input, field] of [
      [{ deregisterAfter: "soon" }, "deregisterAfter"],
      [{ http: { listen: "nope" } }, "http.listen"],
      [{ nats: { url: "http://x" } }, "nats.url"],
      [{ selfPreservation: { threshold: 2 } }, "selfPreservation.threshold"],
      [{ selfPreservation: { window: "soon" } }, "selfPreservation.window"],
      [{ kvReplicas: 0 }, "kvReplicas"],
      [{ bogus: 1 }, "(root)"],
    ] as const) {
      assert.throws(() => parseConfig(input), (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.code, "ROSTER_CONFIG_INVALID");
        assert.match(err.message, new RegExp(field.replace(/[().]/g, "\\$&")));
        return true;
      });
    }
  });

  it("config - flags win over env", () => {
    const r = configFromArgs(["--nats", "nats://a:1", "--http=0.0.0.0:80"], { ROSTER_NATS_URL: "nats://b:2", ROSTER_HTTP: "1.2.3.4:5" });
    assert.deepEqual(r.overrides, { nats: { url: "nats://a:1" }, http: { listen: "0.0.0.0:80" } });
    const e = configFromArgs([], { ROSTER_NATS_URL: "nats://b:2", ROSTER_HTTP: "1.2.3.4:5" });
    assert.deepEqual(e.overrides, { nats: { url: "nats://b:2" }, http: { listen: "1.2.3.4:5" } });
  });

  it("config - unknown or incomplete flags are config errors", () => {
    assert.throws(() => configFromArgs(["--what"], {}), ConfigError);
    assert.throws(() => configFromArgs(["--nats"], {}), /needs a value/);
  });

  it("config - a bad flag names itself", () => {
    assert.throws(() => configFromArgs(["--htp", "127.0.0.1:1"], {}), (e: ConfigError) => /^argv: unknown flag --htp \(known: --nats, --http, --config/.test(e.issues[0]!));
    assert.throws(() => configFromArgs(["--http"], {}), (e: ConfigError) => e.issues[0] === "argv: --http needs a value");
    assert.throws(() => configFromArgs(["registry.yaml"], {}), (e: ConfigError) => /^argv: unexpected argument registry\.yaml/.test(e.issues[0]!));
    assert.deepEqual(configFromArgs(["-c", "r.yaml", "--nats=nats://a:1"], {}), { configFile: "r.yaml", overrides: { nats: { url: "nats://a:1" } } });
  });

  it("config - splitHostPort", () => {
    assert.deepEqual(splitHostPort("127.0.0.1:7700"), { host: "127.0.0.1", port: 7700 });
    assert.deepEqual(splitHostPort("[::1]:80"), { host: "::1", port: 80 });
  });

  it("errors - every code has an HTTP status and a description", () => {
    assert.deepEqual(Object.keys(HTTP_STATUS).sort(), Object.keys(ERROR_CODES).sort());
    for (const code of Object.keys(ERROR_CODES)) assert.match(code, /^ROSTER_[A-Z_]+$/);
  });
});
