import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { createLogger, parseLogLevel, prettyOutput, redactUrl } from "../../src/logger.js";

/** A real pino logger writing JSON lines into memory. */
function capture(env: NodeJS.ProcessEnv = {}, level?: string) {
  const lines: Array<Record<string, unknown>> = [];
  let raw = "";
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      raw += chunk.toString();
      for (const l of chunk.toString().split("\n")) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const log = createLogger({ name: "roster-test", env, destination, ...(level !== undefined ? { level } : {}) });
  return { log, lines, raw: () => raw };
}

describe("shared logger", () => {
  it("logger - credentials are redacted at the top level, one level down and in headers", () => {
    const { log, lines, raw } = capture();
    log.info({ password: "p1", token: "t1", nats: { user: "u", pass: "p2", creds: "/etc/c.creds", seed: "SUAXYZ" }, headers: { authorization: "Bearer abc", accept: "*/*" } }, "config");
    log.child({ component: "http" }).warn({ req: { headers: { authorization: "Basic xyz", "user-agent": "curl" } } }, "request");
    const [a, b] = lines;
    assert.equal(a?.password, "[redacted]");
    assert.equal(a?.token, "[redacted]");
    assert.deepEqual(a?.nats, { user: "u", pass: "[redacted]", creds: "[redacted]", seed: "[redacted]" });
    assert.deepEqual(a?.headers, { authorization: "[redacted]", accept: "*/*" });
    assert.deepEqual((b?.req as { headers: unknown }).headers, { authorization: "[redacted]", "user-agent": "curl" });
    assert.equal(b?.component, "http");
    assert.equal(a?.service, "roster-test");
    for (const secret of ["p1", "t1", "p2", "SUAXYZ", "Bearer abc", "Basic xyz", "c.creds"]) assert.ok(!raw().includes(secret), `"${secret}" leaked`);
  });

  it("logger - user:pass@ is stripped from URLs in fields, lists, error strings and the message", () => {
    const { log, lines, raw } = capture();
    log.info({ url: "nats://alice:s3cret@127.0.0.1:4222", servers: ["nats://bob:hunter2@a:4222", "nats://c:4222"], err: "Error: cannot connect to tls://tok3n@b:4222" }, "connecting to nats://eve:pw9@c:4222");
    const [a] = lines;
    assert.equal(a?.url, "nats://***@127.0.0.1:4222");
    assert.deepEqual(a?.servers, ["nats://***@a:4222", "nats://c:4222"]);
    assert.equal(a?.err, "Error: cannot connect to tls://***@b:4222");
    assert.equal(a?.msg, "connecting to nats://***@c:4222");
    for (const secret of ["s3cret", "hunter2", "tok3n", "pw9", "alice", "bob"]) assert.ok(!raw().includes(secret), `"${secret}" leaked`);
    assert.equal(redactUrl("nats://a:b@h:1,nats://c:d@h:2"), "nats://***@h:1,nats://***@h:2");
    assert.equal(redactUrl("mail me at a@b.c"), "mail me at a@b.c", "only URL userinfo is touched");
  });

  it("logger - level comes from ROSTER_LOG_LEVEL unless given; an unknown level names the variable", () => {
    const env = capture({ ROSTER_LOG_LEVEL: "warn" });
    env.log.info("hidden");
    env.log.warn("shown");
    assert.deepEqual(env.lines.map((l) => l.msg), ["shown"]);
    const flag = capture({ ROSTER_LOG_LEVEL: "warn" }, "debug");
    flag.log.debug("debug shown");
    assert.equal(flag.lines.length, 1);
    assert.throws(() => capture({ ROSTER_LOG_LEVEL: "loud" }), /ROSTER_LOG_LEVEL: expected one of trace, debug/);
    assert.equal(parseLogLevel(" WARN "), "warn");
  });

  it("logger - pretty only for a terminal, or when asked", () => {
    assert.equal(prettyOutput({}, false), false);
    assert.equal(prettyOutput({}, true), true);
    assert.equal(prettyOutput({ ROSTER_LOG_PRETTY: "0" }, true), false);
    assert.equal(prettyOutput({ ROSTER_LOG_PRETTY: "1" }, false), true);
  });
});
