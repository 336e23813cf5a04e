import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError } from "../../src/errors.js";
import { configFromArgs, parseConfig } from "../../src/config.js";

describe("listeners config", () => {
  it("listeners-config - DNS and the Consul API are off by default, with Consul's defaults when on", () => {
    const c = parseConfig({});
    assert.equal(c.dns.listen, undefined);
    assert.equal(c.consulApi.listen, undefined);
    assert.equal(c.dns.domain, "roster");
    assert.equal(c.dns.ttl, 0);
    assert.equal(c.dns.onlyPassing, false);
    assert.equal(c.consulApi.datacenter, "dc1");
    const on = parseConfig({ dns: { listen: "127.0.0.1:8600", domain: "Roster.Example.", ttl: "5s", rateLimit: null } });
    assert.equal(on.dns.domain, "roster.example");
    assert.equal(on.dns.ttl, 5000);
    assert.equal(on.dns.rateLimit, null);
  });

  it("listeners-config - a bad field fails naming it", () => {
    for (const [input, field] of [
      [{ dns: { listen: "nope" } }, "dns.listen"],
      [{ dns: { domain: "bad domain" } }, "dns.domain"],
      [{ dns: { maxUdpSize: 100 } }, "dns.maxUdpSize"],
      [{ consulApi: { listen: "1.2.3.4:99999" } }, "consulApi.listen"],
      [{ consulApi: { datacenter: "a.b" } }, "consulApi.datacenter"],
      [{ dns: { unknown: 1 } }, "dns"],
    ] as const) {
      assert.throws(() => parseConfig(input), (e: ConfigError) => e.issues.some((i) => i.startsWith(field)), field);
    }
  });

  it("listeners-config - ROSTER_DNS and ROSTER_CONSUL_API turn them on", () => {
    const { overrides } = configFromArgs([], { ROSTER_DNS: "127.0.0.1:8600", ROSTER_CONSUL_API: "127.0.0.1:8500" });
    assert.deepEqual(overrides.dns, { listen: "127.0.0.1:8600" });
    assert.deepEqual(overrides.consulApi, { listen: "127.0.0.1:8500" });
  });
});
