import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { ConfigError } from "../../src/errors.js";
import { loadConfigFile, parseConfig, sanitizeHostId, ServiceInput, resolveInstance } from "../../src/config.js";

const fixtures = fileURLToPath(new URL("../../../test/fixtures/", import.meta.url));
const facts = { hostname: "box-7.eu.example.com", defaultAddress: "10.1.2.3", baseDir: "/srv" };

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail("expected a ConfigError");
}

describe("config", () => {
  it("config - loads a full YAML file with every default applied", () => {
    const c = loadConfigFile(`${fixtures}good.yaml`, facts);
    assert.deepEqual(c.host, { id: "web-1", zone: "eu-west-1a" });
    assert.equal(c.heartbeatIntervalMs, 2000);
    assert.equal(c.drainPeriodMs, 3000);
    assert.deepEqual(c.api, { host: "127.0.0.1", port: 7799 });
    assert.equal(c.services.length, 2);
    const [orders, payments] = c.services;
    assert.ok(orders && payments);
    assert.equal(orders.id, "orders-1");
    assert.equal(orders.zone, "eu-west-1a");
    assert.deepEqual(orders.tags, ["v2"]);
    assert.deepEqual(orders.meta, { version: "2.1.0" });
    assert.equal(orders.weight, 50);
    assert.deepEqual(orders.checks.map((x) => x.id), ["http-0", "tcp-1", "exec-2", "ttl-3"]);
    const [http, tcp, exec, ttl] = orders.checks;
    assert.deepEqual(http, { id: "http-0", type: "http", intervalMs: 1000, timeoutMs: 500, successBeforePassing: 1, failuresBeforeCritical: 2, url: "http://127.0.0.1:8080/health", method: "GET", headers: {}, tlsSkipVerify: false });
    assert.deepEqual(tcp, { id: "tcp-1", type: "tcp", intervalMs: 2000, timeoutMs: 2000, successBeforePassing: 1, failuresBeforeCritical: 2, host: "127.0.0.1", port: 8080 });
    assert.equal(exec?.type === "exec" && exec.cwd, "/srv");
    assert.equal(exec?.timeoutMs, 5000);
    assert.equal(ttl?.type === "ttl" && ttl.ttlMs, 10_000);
    assert.equal(ttl?.failuresBeforeCritical, 1);
    // payments: id from host id and port, address from the host, defaults
    assert.equal(payments.id, "web-1-8081");
    assert.equal(payments.address, "10.1.2.3");
    assert.equal(payments.weight, 100);
    assert.deepEqual(payments.checks, []);
  });

  it("config - loads a JSON file; host defaults come from the machine", () => {
    const c = loadConfigFile(`${fixtures}good.json`, facts);
    assert.equal(c.host.id, "web-2");
    assert.equal(c.heartbeatIntervalMs, 1000);
    assert.equal(c.drainPeriodMs, 5000);
    assert.deepEqual(c.api, { host: "127.0.0.1", port: 7701 });
    const check = c.services[0]?.checks[0];
    assert.equal(check?.successBeforePassing, 2);
    assert.equal(check?.failuresBeforeCritical, 3);
    assert.equal(check?.type === "http" && check.url, "http://10.1.2.3:9090/health");
  });

  it("config - an empty document is a valid config (instances may come from the API)", () => {
    const c = parseConfig(null, "empty.yaml", facts);
    assert.equal(c.host.id, "box-7");
    assert.deepEqual(c.services, []);
  });

  it("config - a bad duration names the field (YAML)", () => {
    const err = configError(() => loadConfigFile(`${fixtures}bad-interval.yaml`, facts));
    assert.equal(err.code, "ROSTER_CONFIG_INVALID");
    assert.deepEqual(err.issues, ['services[1].checks[0].interval: expected a duration like "1s"']);
    assert.match(err.message, /bad-interval\.yaml/);
  });

  it("config - a bad duration names the field (JSON)", () => {
    const err = configError(() => loadConfigFile(`${fixtures}bad-interval.json`, facts));
    assert.deepEqual(err.issues, ['services[1].checks[0].interval: expected a duration like "1s"']);
  });

  it("config - every problem is reported, each with its path", () => {
    const err = configError(() => loadConfigFile(`${fixtures}bad-many.yaml`, facts));
    const text = err.issues.join("\n");
    assert.match(text, /^host\.id: expected 1-63 letters/m);
    assert.match(text, /^services\[0\]\.port: /m);
    assert.match(text, /^services\[0\]\.checks\[0\]\.type: expected a check with type "http", "tcp", "grpc", "exec" or "ttl"/m);
    assert.match(text, /^services\[0\]\.checks\[1\]\.command: expected at least the program to run/m);
  });

  it("config - duplicate instance ids on a host are rejected", () => {
    const err = configError(() => parseConfig({ services: [{ name: "a", id: "x", port: 1 }, { name: "b", id: "x", port: 2 }] }, "f.yaml", facts));
    assert.deepEqual(err.issues, ['services[1].id: instance id "x" already used by services[0] (ids are unique on a host; set id)']);
  });

  it("config - duplicate check ids in an instance are rejected", () => {
    const err = configError(() => parseConfig({ services: [{ name: "a", port: 1, checks: [{ type: "tcp", id: "c" }, { type: "http", id: "c" }] }] }, "f.yaml", facts));
    assert.deepEqual(err.issues, ['services[0].checks[1].id: duplicate check id "c"']);
  });

  it("config - unknown keys are typos, not ignored", () => {
    const err = configError(() => parseConfig({ heartbeat: { intervall: "1s" } }, "f.yaml", facts));
    assert.deepEqual(err.issues, ['heartbeat: Unrecognized key: "intervall"']);
  });

  it("config - out-of-range durations and thresholds are rejected", () => {
    const err = configError(() =>
      parseConfig({ heartbeat: { interval: "10ms" }, services: [{ name: "a", port: 1, checks: [{ type: "http", interval: "1s", failuresBeforeCritical: 0 }] }] }, "f.yaml", facts),
    );
    assert.equal(err.issues.length, 2);
    assert.match(err.issues[0]!, /^heartbeat\.interval: expected a duration between 50ms and 1h/);
    assert.match(err.issues[1]!, /^services\[0\]\.checks\[0\]\.failuresBeforeCritical: /);
  });

  it("config - a bad api.listen is rejected", () => {
    for (const listen of ["7701", "localhost", "127.0.0.1:99999", "a b:1"]) {
      const err = configError(() => parseConfig({ api: { listen } }, "f.yaml", facts));
      assert.match(err.issues[0]!, /^api\.listen: /, listen);
    }
    assert.deepEqual(parseConfig({ api: { listen: "[::1]:0" } }, "f.yaml", facts).api, { host: "::1", port: 0 });
  });

  it("config - syntax errors are ROSTER_CONFIG_PARSE, for YAML and JSON", () => {
    for (const f of ["bad-syntax.yaml", "bad-syntax.json"]) {
      const err = configError(() => loadConfigFile(`${fixtures}${f}`, facts));
      assert.equal(err.code, "ROSTER_CONFIG_PARSE", f);
      assert.match(err.issues[0]!, /^\(root\): not valid (YAML|JSON): /);
    }
  });

  it("config - a missing file is ROSTER_CONFIG_READ", () => {
    const err = configError(() => loadConfigFile(`${fixtures}nope.yaml`, facts));
    assert.equal(err.code, "ROSTER_CONFIG_READ");
    assert.match(err.message, /ENOENT/);
  });

  it("config - host ids are sanitised from the hostname", () => {
    assert.equal(sanitizeHostId("web-1.example.com"), "web-1");
    assert.equal(sanitizeHostId("My Box!"), "My-Box-");
    assert.equal(sanitizeHostId("__x"), "x");
    assert.equal(sanitizeHostId(""), "host");
    assert.equal(sanitizeHostId("a".repeat(100)).length, 63);
  });

  it("config - a default id that is too long asks for an explicit id", () => {
    const svc = ServiceInput.parse({ name: "a", port: 65535 });
    const r = resolveInstance(svc, { hostId: "h".repeat(60), defaultAddress: "127.0.0.1", baseDir: "/" });
    assert.equal(r.ok, false);
    assert.match(JSON.stringify(r), /set id explicitly/);
  });

  it("config - http url overrides address and path; IPv6 addresses are bracketed", () => {
    const a = resolveInstance(ServiceInput.parse({ name: "a", port: 80, address: "::1", checks: [{ type: "http" }] }), { hostId: "h", defaultAddress: "x", baseDir: "/" });
    assert.ok(a.ok);
    assert.equal(a.value.checks[0]?.type === "http" && a.value.checks[0].url, "http://[::1]:80/health");
    const b = resolveInstance(ServiceInput.parse({ name: "a", port: 80, checks: [{ type: "http", url: "https://x.test/ready" }] }), { hostId: "h", defaultAddress: "x", baseDir: "/" });
    assert.ok(b.ok);
    assert.equal(b.value.checks[0]?.type === "http" && b.value.checks[0].url, "https://x.test/ready");
    assert.equal(b.value.checks[0]?.intervalMs, 10_000);
    assert.equal(b.value.checks[0]?.timeoutMs, 10_000);
  });
});
