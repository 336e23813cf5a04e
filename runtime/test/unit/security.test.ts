import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SecretRedactor, credentialFlags, isLoopbackHost, isMetadataOrLinkLocal, secretEnvValues, securityWarnings } from "../../src/security.js";

describe("security helpers", () => {
  it("security - loopback: localhost, 127/8, ::1 (bracketed or not); not 0.0.0.0, ::, other names", () => {
    for (const h of ["localhost", "LOCALHOST", "a.localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]", "::ffff:127.0.0.1"]) assert.equal(isLoopbackHost(h), true, h);
    for (const h of ["0.0.0.0", "::", "10.0.0.1", "localhost.attacker.example", "127.0.0.1.nip.io", "[::2]", ""]) assert.equal(isLoopbackHost(h), false, h);
  });

  it("security - metadata and link-local: 169.254/16, fe80::/10, cloud metadata names and addresses", () => {
    for (const h of ["169.254.169.254", "169.254.0.1", "fe80::1", "[fe80::1]", "febf::1", "fd00:ec2::254", "::ffff:169.254.169.254", "metadata.google.internal", "metadata.google.internal.", "100.100.100.200", "instance-data"]) {
      assert.equal(isMetadataOrLinkLocal(h), true, h);
    }
    for (const h of ["127.0.0.1", "10.0.0.1", "fec0::1", "::1", "example.com", "169.255.0.1"]) assert.equal(isMetadataOrLinkLocal(h), false, h);
  });

  it("security - credentials on the command line: URL userinfo in any flag, --token; nothing else", () => {
    assert.deepEqual(credentialFlags(["--nats", "nats://u:p@h:4222", "--http", "0.0.0.0:1"]), ["--nats"]);
    assert.deepEqual(credentialFlags(["--nats=nats://a:4222,nats://tok@b:4222"]), ["--nats"]);
    assert.deepEqual(credentialFlags(["--token", "x", "services"]), ["--token"]);
    assert.deepEqual(credentialFlags(["--nats", "nats://h:4222", "--config", "a@b.json"]), []);
  });

  it("security - warnings: one per exposed unauthenticated listener, one for command-line credentials", () => {
    const w = securityWarnings({
      listeners: [
        { what: "HTTP API", host: "0.0.0.0", authenticated: false },
        { what: "local API", host: "127.0.0.1", authenticated: false },
        { what: "other", host: "::", authenticated: true },
      ],
      argv: ["--nats", "nats://u:p@h"],
    });
    assert.equal(w.length, 2);
    assert.match(w[0]!, /HTTP API listens on 0\.0\.0\.0, beyond loopback, WITHOUT authentication/);
    assert.match(w[1]!, /\(--nats\)/);
    assert.doesNotMatch(w.join(), /u:p/);
    assert.deepEqual(securityWarnings({ listeners: [{ what: "x", host: "[::1]", authenticated: false }] }), []);
  });

  it("security - redactor: every occurrence, longest first, short values ignored; secret env values found by name", () => {
    const r = new SecretRedactor(["hunter2-long-password", "hunter2-long", "short", undefined]);
    assert.equal(r.size, 2);
    assert.equal(r.redact("a hunter2-long-password b hunter2-long c short"), "a [redacted] b [redacted] c short");
    const values = secretEnvValues({ ROSTER_NATS_PASSWORD: "p1", ROSTER_AGENT_TOKEN: "t1", ROSTER_NATS_NKEY_SEED_FILE: "/etc/x.nk", AWS_SECRET_ACCESS_KEY: "k1", PATH: "/bin", HOME: "/root" });
    assert.deepEqual(values.sort(), ["k1", "p1", "t1"]);
  });
});
