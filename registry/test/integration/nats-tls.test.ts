// The registry over TLS to NATS with a client certificate (mutual TLS), on a real nats-server
// configured with certificates made by openssl in the test; without the certificate, no entry.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { connect } from "@nats-io/transport-node";
import { natsConnectOptions } from "roster-schemas";
import { NatsServer, selfSignedCert } from "roster-testkit";
import type { Registry } from "../../src/app.js";
import { startRegistry } from "./helpers.js";

describe("registry to NATS over mutual TLS (real nats-server)", () => {
  let dir: string;
  let nats: NatsServer;
  let registry: Registry | undefined;
  let server: { certFile: string; keyFile: string };
  let client: { certFile: string; keyFile: string };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "roster-nats-tls-"));
    server = selfSignedCert(dir, "server");
    client = selfSignedCert(dir, "client");
    const conf = join(dir, "nats.conf");
    writeFileSync(conf, `tls {\n  cert_file: "${server.certFile}"\n  key_file: "${server.keyFile}"\n  ca_file: "${client.certFile}"\n  verify: true\n}\n`);
    nats = await NatsServer.start({ configFile: conf });
  });
  after(async () => {
    await registry?.close();
    await nats?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("nats-tls - the registry connects with the CA and its client certificate and gets ready", async () => {
    registry = await startRegistry(nats.url, { nats: { url: nats.url, reconnectWait: 100, tls: { caFile: server.certFile, ...client } } });
    assert.equal(registry.ready(), true);
  });

  it("nats-tls - without a client certificate the server refuses the connection", async () => {
    await assert.rejects(connect({ ...natsConnectOptions(nats.url, { tls: { caFile: server.certFile } }), timeout: 1000, maxReconnectAttempts: 0 }));
  });
});
