import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { NatsServer, freePort, metricValue, scrape, selfSignedCert, waitFor } from "roster-testkit";
import { loadXdsProtos } from "../../src/adapters/xds/protos.js";
import { ADS_METHOD, DELTA_ADS_METHOD } from "../../src/adapters/xds/server.js";
import { TYPE_URL } from "../../src/core/xds-resources.js";
import type { Registry } from "../../src/app.js";
import { FakeAgent, inst, startRegistry } from "./helpers.js";

// The protocol as the Envoy spec states it, driven by a raw ADS stream (grpc-js, the official
// protos): versions, nonces, ACK, NACK, what a health flip sends; and who may connect.
const root = loadXdsProtos();
const Req = root.lookupType("envoy.service.discovery.v3.DiscoveryRequest");
const Res = root.lookupType("envoy.service.discovery.v3.DiscoveryResponse");
const Cla = root.lookupType("envoy.config.endpoint.v3.ClusterLoadAssignment");
const Listener = root.lookupType("envoy.config.listener.v3.Listener");
const DReq = root.lookupType("envoy.service.discovery.v3.DeltaDiscoveryRequest");
const DRes = root.lookupType("envoy.service.discovery.v3.DeltaDiscoveryResponse");

interface Response {
  version_info: string;
  nonce: string;
  type_url: string;
  resources: Array<{ type_url: string; value: Uint8Array }>;
}

class RawAds {
  private readonly client: grpc.Client;
  readonly call: grpc.ClientDuplexStream<Buffer, Buffer>;
  private readonly queue: Response[] = [];
  /** Every response as it came off the wire. */
  readonly raw: Buffer[] = [];
  private waiters: Array<(r: Response) => void> = [];
  status: grpc.StatusObject | null = null;
  constructor(port: number, opts: { token?: string; creds?: grpc.ChannelCredentials } = {}) {
    this.client = new grpc.Client(`127.0.0.1:${port}`, opts.creds ?? grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    if (opts.token) md.set("authorization", `Bearer ${opts.token}`);
    const id = (b: Buffer) => b;
    this.call = this.client.makeBidiStreamRequest(ADS_METHOD, id, id, md);
    this.call.on("data", (b: Buffer) => {
      this.raw.push(b);
      const r = Res.toObject(Res.decode(b), { defaults: true }) as Response;
      const w = this.waiters.shift();
      if (w) w(r);
      else this.queue.push(r);
    });
    this.call.on("status", (s) => (this.status = s));
    this.call.on("error", () => undefined);
  }
  send(typeUrl: string, names: string[], version = "", nonce = "", error?: string): void {
    const msg = Req.fromObject({ node: { id: "raw-test" }, type_url: typeUrl, resource_names: names, version_info: version, response_nonce: nonce, ...(error ? { error_detail: { code: 3, message: error } } : {}) });
    this.call.write(Buffer.from(Req.encode(msg).finish()));
  }
  next(timeoutMs = 5000): Promise<Response> {
    const q = this.queue.shift();
    if (q) return Promise.resolve(q);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("no DiscoveryResponse in time")), timeoutMs);
      this.waiters.push((r) => {
        clearTimeout(t);
        resolve(r);
      });
    });
  }
  pending(): number {
    return this.queue.length;
  }
  close(): void {
    this.call.cancel();
    this.client.close();
  }
}

const statusOf = (r: Response, id: string): string => {
  const cla = Cla.toObject(Cla.decode(r.resources[0]!.value), { enums: String }) as { endpoints: Array<{ lb_endpoints: Array<{ endpoint: { hostname: string }; health_status: string }> }> };
  return cla.endpoints.flatMap((e) => e.lb_endpoints).find((e) => e.endpoint.hostname === id)?.health_status ?? "absent";
};

describe("xDS - protocol (raw ADS stream)", () => {
  let nats: NatsServer;
  let registry: Registry;
  let agent: FakeAgent;
  let beat: NodeJS.Timeout | undefined;

  before(async () => {
    nats = await NatsServer.start();
    registry = await startRegistry(nats.url, { xds: { listen: `127.0.0.1:${await freePort()}`, warning: "degraded" } });
    // A long heartbeat interval: on a loaded machine a late beat must not make the host agent-lost.
    agent = await FakeAgent.connect(nats.url, "h1", 1, 2000);
    await agent.register([inst("g1", { service: "greeter", port: 9001, zone: "z1", weight: 70 }), inst("g2", { service: "greeter", port: 9002, zone: "z2" })]);
    beat = setInterval(() => void agent.heartbeat().catch(() => undefined), 250);
    await waitFor(() => registry.memory.service("greeter").instances.length === 2, { timeoutMs: 5000 });
  });

  after(async () => {
    clearInterval(beat);
    await agent?.nc.close();
    await registry?.close();
    await nats?.close();
  });

  it("xDS - a listener for a known service, none for an unknown one; versions and nonces as the protocol says", async () => {
    const ads = new RawAds(registry.xds!.port);
    try {
      ads.send(TYPE_URL.listener, ["greeter", "nope"]);
      const r = await ads.next();
      assert.equal(r.type_url, TYPE_URL.listener);
      assert.equal(r.version_info, String(registry.memory.revision));
      assert.ok(r.nonce);
      assert.equal(r.resources.length, 1, "the unknown name is absent: it does not exist");
      const l = Listener.toObject(Listener.decode(r.resources[0]!.value)) as { name: string; api_listener: { api_listener: { type_url: string } } };
      assert.equal(l.name, "greeter");
      assert.match(l.api_listener.api_listener.type_url, /HttpConnectionManager$/);
      ads.send(TYPE_URL.listener, ["greeter", "nope"], r.version_info, r.nonce); // ACK
      await new Promise((res) => setTimeout(res, 200));
      assert.equal(ads.pending(), 0, "an ACK is not answered");
    } finally {
      ads.close();
    }
  });

  it("xDS - a health flip sends the endpoints again with a new version; warning is DEGRADED as configured", async () => {
    const ads = new RawAds(registry.xds!.port);
    try {
      ads.send(TYPE_URL.endpoint, ["greeter"]);
      const r1 = await ads.next();
      assert.equal(statusOf(r1, "g1"), "HEALTHY");
      ads.send(TYPE_URL.endpoint, ["greeter"], r1.version_info, r1.nonce);
      await agent.health("g1", "critical", "greeter");
      const r2 = await ads.next();
      assert.equal(statusOf(r2, "g1"), "UNHEALTHY");
      assert.ok(Number(r2.version_info) > Number(r1.version_info));
      assert.notEqual(r2.nonce, r1.nonce);
      ads.send(TYPE_URL.endpoint, ["greeter"], r2.version_info, r2.nonce);
      await agent.health("g1", "warning", "greeter");
      assert.equal(statusOf(await ads.next(), "g1"), "DEGRADED");
    } finally {
      ads.close();
    }
  });

  it("xDS - incremental (delta) ADS: only what changed, with per-resource versions", async () => {
    const client = new grpc.Client(`127.0.0.1:${registry.xds!.port}`, grpc.credentials.createInsecure());
    const id = (b: Buffer) => b;
    const call = client.makeBidiStreamRequest(DELTA_ADS_METHOD, id, id);
    type DR = { nonce: string; resources: Array<{ name: string; version: string; resource: { value: Uint8Array } }>; removed_resources: string[] };
    const got: DR[] = [];
    call.on("data", (b: Buffer) => got.push(DRes.toObject(DRes.decode(b), { defaults: true }) as DR));
    call.on("error", () => undefined);
    const send = (o: Record<string, unknown>) => call.write(Buffer.from(DReq.encode(DReq.fromObject({ type_url: TYPE_URL.endpoint, ...o })).finish()));
    try {
      send({ node: { id: "delta-test" }, resource_names_subscribe: ["greeter", "nope"] });
      await waitFor(() => got.length === 1, { timeoutMs: 5000, what: "the first delta response" });
      const r1 = got[0]!;
      assert.deepEqual(r1.resources.map((r) => r.name), ["greeter"]);
      const v1 = Number(r1.resources[0]!.version);
      send({ response_nonce: r1.nonce });
      await agent.health("g2", "warning", "greeter");
      await waitFor(() => got.length === 2, { timeoutMs: 5000, what: "a delta response after the flip" });
      const r2 = got[1]!;
      assert.ok(Number(r2.resources[0]!.version) > v1, "a new version of the one resource that changed");
      assert.equal(statusOf({ resources: [{ type_url: "", value: r2.resources[0]!.resource.value }] } as Response, "g2"), "DEGRADED");
      send({ response_nonce: r2.nonce, resource_names_unsubscribe: ["greeter"] });
      await agent.health("g2", "passing", "greeter");
      await new Promise((res) => setTimeout(res, 500));
      assert.equal(got.length, 2, "nothing after the unsubscribe");
    } finally {
      call.cancel();
      client.close();
    }
  });

  it("xDS - incremental (delta) ADS: a push is encoded once for every stream it goes to", async () => {
    const id = (b: Buffer) => b;
    const open = () => {
      const client = new grpc.Client(`127.0.0.1:${registry.xds!.port}`, grpc.credentials.createInsecure());
      const call = client.makeBidiStreamRequest(DELTA_ADS_METHOD, id, id);
      const raw: Buffer[] = [];
      call.on("data", (b: Buffer) => raw.push(b));
      call.on("error", () => undefined);
      const send = (o: Record<string, unknown>) => call.write(Buffer.from(DReq.encode(DReq.fromObject({ type_url: TYPE_URL.endpoint, ...o })).finish()));
      const nonceOf = (b: Buffer) => (DRes.decode(b) as unknown as { nonce: string }).nonce;
      return { raw, send, nonceOf, close: () => (call.cancel(), client.close()) };
    };
    const streams = [open(), open()];
    try {
      for (const d of streams) d.send({ node: { id: "delta-shared" }, resource_names_subscribe: ["greeter"] });
      await waitFor(() => streams.every((d) => d.raw.length === 1), { timeoutMs: 5000, what: "the first delta responses" });
      for (const d of streams) d.send({ response_nonce: d.nonceOf(d.raw[0]!) });
      await new Promise((res) => setTimeout(res, 200));
      const encodes0 = registry.xds!.stats.responseEncodes;
      await agent.health("g2", "critical", "greeter");
      await waitFor(() => streams.every((d) => d.raw.length === 2), { timeoutMs: 5000, what: "a delta response after the flip on both streams" });
      assert.equal(registry.xds!.stats.responseEncodes - encodes0, 1, "one DeltaDiscoveryResponse encoded for both streams");
      assert.ok(streams[0]!.raw[1]!.equals(streams[1]!.raw[1]!), "byte-identical");
      // The shared nonce is each stream's ACK: the next flip reaches both.
      for (const d of streams) d.send({ response_nonce: d.nonceOf(d.raw[1]!) });
      await agent.health("g2", "passing", "greeter");
      await waitFor(() => streams.every((d) => d.raw.length === 3), { timeoutMs: 5000, what: "the next flip on both streams" });
    } finally {
      for (const d of streams) d.close();
    }
  });

  it("xDS - a NACK is logged and counted, and the rejected version is not pushed again", async () => {
    const ads = new RawAds(registry.xds!.port);
    try {
      const before = metricValue(await scrape(`${registry.url}/metrics`), "roster_registry_xds_nacks_total", { type: "endpoint" }) ?? 0;
      ads.send(TYPE_URL.endpoint, ["greeter"]);
      const r1 = await ads.next();
      ads.send(TYPE_URL.endpoint, ["greeter"], "", r1.nonce, "test: refusing this version");
      await waitFor(async () => (metricValue(await scrape(`${registry.url}/metrics`), "roster_registry_xds_nacks_total", { type: "endpoint" }) ?? 0) === before + 1, { timeoutMs: 3000, what: "the NACK counted" });
      await new Promise((res) => setTimeout(res, 300));
      assert.equal(ads.pending(), 0, "nothing is re-sent after a NACK");
      await agent.health("g2", "critical", "greeter");
      const r2 = await ads.next();
      assert.notEqual(r2.version_info, r1.version_info, "the next change goes out with a new version");
      assert.equal(statusOf(r2, "g2"), "UNHEALTHY");
    } finally {
      ads.close();
    }
  });

  it("xDS - a push is encoded once: every stream gets the same bytes and nonce, and each ACK of that nonce counts", async () => {
    const streams = [new RawAds(registry.xds!.port), new RawAds(registry.xds!.port), new RawAds(registry.xds!.port)];
    try {
      for (const a of streams) a.send(TYPE_URL.endpoint, ["greeter"]);
      for (const a of streams) {
        const r = await a.next();
        a.send(TYPE_URL.endpoint, ["greeter"], r.version_info, r.nonce);
      }
      await new Promise((res) => setTimeout(res, 200)); // the ACKs are in
      const encodes0 = registry.xds!.stats.responseEncodes;
      await agent.health("g1", "critical", "greeter");
      const pushed = await Promise.all(streams.map((a) => a.next()));
      assert.equal(registry.xds!.stats.responseEncodes - encodes0, 1, "one DiscoveryResponse encoded for the three streams");
      const [first, ...rest] = streams.map((a) => a.raw.at(-1)!);
      for (const b of rest) assert.ok(b.equals(first!), "byte-identical responses");
      assert.equal(new Set(pushed.map((r) => r.nonce)).size, 1);
      // Each stream's ACK of the shared nonce is an ACK: the next change reaches every stream.
      for (const [i, a] of streams.entries()) a.send(TYPE_URL.endpoint, ["greeter"], pushed[i]!.version_info, pushed[i]!.nonce);
      await agent.health("g1", "passing", "greeter");
      const healthy = await Promise.all(streams.map((x) => x.next()));
      for (const r of healthy) assert.equal(statusOf(r, "g1"), "HEALTHY");
      // A resubscription at the same revision is the same response, under a nonce new on that stream.
      streams[0]!.send(TYPE_URL.endpoint, ["greeter"]);
      const again = await streams[0]!.next();
      assert.equal(again.version_info, healthy[0]!.version_info);
      assert.ok(Number(again.nonce) > Number(healthy[0]!.nonce), "nonces rise on a stream");
    } finally {
      for (const a of streams) a.close();
    }
  });
});

describe("xDS - who may connect", () => {
  const READ = "xds-read-token-0123456789";
  let nats: NatsServer;
  let registry: Registry;
  let dir = "";

  before(async () => {
    nats = await NatsServer.start();
    dir = await mkdtemp(join(tmpdir(), "roster-xds-tls-"));
    const cert = selfSignedCert(dir);
    registry = await startRegistry(nats.url, {
      http: { listen: "127.0.0.1:0", auth: { tokens: [{ name: "reader", token: READ, scopes: ["read"] }], openPaths: ["/healthz", "/readyz", "/metrics"] } },
      xds: { listen: `127.0.0.1:${await freePort()}`, tls: { certFile: cert.certFile, keyFile: cert.keyFile } },
    });
    const agent = await FakeAgent.connect(nats.url, "h1");
    await agent.register([inst("g1", { service: "greeter" })]);
    await waitFor(() => registry.memory.service("greeter").instances.length === 1, { timeoutMs: 5000 });
    await agent.nc.close();
  });

  after(async () => {
    await registry?.close();
    await nats?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const tlsCreds = async () => grpc.credentials.createSsl(await readFile(join(dir, "server.crt")));
  const endOf = async (ads: RawAds) => {
    await waitFor(() => ads.status !== null, { timeoutMs: 5000, what: "the stream to end" });
    return ads.status!;
  };

  it("xDS - without a token, or with a wrong one, the stream is refused (UNAUTHENTICATED)", async () => {
    for (const token of [undefined, "not-the-token-0123456789"]) {
      const ads = new RawAds(registry.xds!.port, { creds: await tlsCreds(), ...(token ? { token } : {}) });
      ads.send(TYPE_URL.listener, ["greeter"]);
      const s = await endOf(ads);
      assert.equal(s.code, grpc.status.UNAUTHENTICATED, `token ${token ?? "(none)"}: ${s.details}`);
      ads.close();
    }
    const samples = await scrape(`${registry.url}/metrics`);
    assert.equal(metricValue(samples, "roster_registry_xds_refused_total", { reason: "unauthenticated" }), 2);
  });

  it("xDS - with a read token over TLS the stream is served; without TLS nothing is", async () => {
    const ads = new RawAds(registry.xds!.port, { creds: await tlsCreds(), token: READ });
    try {
      ads.send(TYPE_URL.cluster, ["greeter"]);
      const r = await ads.next();
      assert.equal(r.resources.length, 1);
    } finally {
      ads.close();
    }
    const plain = new RawAds(registry.xds!.port, { token: READ });
    plain.send(TYPE_URL.cluster, ["greeter"]);
    const s = await endOf(plain);
    assert.equal(s.code, grpc.status.UNAVAILABLE);
    plain.close();
  });
});
