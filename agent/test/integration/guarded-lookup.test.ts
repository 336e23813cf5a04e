// API-registered checks resolve names through guardedLookup: a link-local or metadata answer is
// refused at probe time; ordinary names still probe (real DNS via the system resolver, real sockets).
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { guardedLookup } from "../../src/adapters/checks/guarded-lookup.js";
import { HttpProber } from "../../src/adapters/checks/http.js";
import { probeTcp } from "../../src/adapters/checks/tcp.js";

const lookup = (host: string, all = false) =>
  new Promise<{ err: NodeJS.ErrnoException | null; address: unknown }>((resolve) => guardedLookup(host, { all }, (err, address) => resolve({ err, address })));

describe("guarded lookup (API-registered checks)", () => {
  let server: Server;
  let port = 0;
  const prober = new HttpProber();

  before(async () => {
    server = createServer((_req, res) => res.end("ok"));
    // Bound to whatever "localhost" resolves to first: the probes below resolve it the same way.
    await new Promise<void>((r) => server.listen(0, "localhost", r));
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    await prober.close();
    await new Promise((r) => server.close(r));
  });

  it("guarded-lookup - an answer in 169.254/16 or fe80::/10 is refused, naming the setting", async () => {
    for (const host of ["169.254.169.254", "fe80::1"]) {
      const r = await lookup(host);
      assert.equal(r.err?.code, "ECHECKTARGET", host);
      assert.match(r.err?.message ?? "", /api\.checkTargets/);
    }
    assert.equal((await lookup("169.254.169.254", true)).err?.code, "ECHECKTARGET");
  });

  it("guarded-lookup - ordinary names resolve (one address or all), and guarded tcp/http probes of them pass", async () => {
    const one = await lookup("localhost");
    assert.equal(one.err, null);
    assert.match(String(one.address), /^(127\.0\.0\.1|::1)$/);
    const all = await lookup("localhost", true);
    assert.ok(Array.isArray(all.address) && all.address.length >= 1);
    const tcp = await probeTcp({ host: "localhost", port, timeoutMs: 2000, guarded: true });
    assert.equal(tcp.status, "passing", tcp.output);
    const http = await prober.probe({ id: "h", type: "http", intervalMs: 1000, timeoutMs: 2000, successBeforePassing: 1, failuresBeforeCritical: 1, url: `http://localhost:${port}/`, method: "GET", headers: {}, tlsSkipVerify: false, guarded: true });
    assert.equal(http.output, "HTTP 200");
  });
});
