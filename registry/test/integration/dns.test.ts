// The DNS interface against real resolvers: Debian's dig and Node's dns.promises.Resolver, over
// real UDP and TCP, on a real registry fed by the agent wire protocol over a real nats-server.
import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { once } from "node:events";
import { Resolver } from "node:dns/promises";
import { after, before, describe, it } from "node:test";
import dnsPacket from "dns-packet";
import fc from "fast-check";
import { NatsServer, waitFor } from "roster-testkit";
import type { Registry } from "../../src/app.js";
import { assertDigInstalled, dig } from "./dig.js";
import { build } from "../../src/app.js";
import { parseConfig } from "../../src/config.js";
import { FakeAgent, inst, silent, startRegistry } from "./helpers.js";

/** Sends one datagram and waits for one answer (null after `ms`). */
async function udpAsk(address: string, payload: Buffer, ms = 1000): Promise<Buffer | null> {
  const i = address.lastIndexOf(":");
  const sock = createSocket("udp4");
  try {
    sock.send(payload, Number(address.slice(i + 1)), address.slice(0, i));
    const t = AbortSignal.timeout(ms);
    const [msg] = (await once(sock, "message", { signal: t }).catch(() => [null])) as [Buffer | null];
    return msg;
  } finally {
    sock.close();
  }
}

/** dns-packet decodes the rcode; its types leave it out. */
const rcodeOf = (b: Buffer) => (dnsPacket.decode(b) as dnsPacket.DecodedPacket & { rcode: string }).rcode;

const query = (name: string, type = "A", id = 4242) =>
  dnsPacket.encode({ type: "query", id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: type as "A", name, class: "IN" }] });

describe("dns", () => {
  let nats: NatsServer;
  let registry: Registry;
  let dnsAt: string;
  let good: FakeAgent;
  let lost: FakeAgent;
  let stopBeat: () => void;

  before(async () => {
    await assertDigInstalled();
    nats = await NatsServer.start();
    registry = await startRegistry(nats.url, { dns: { listen: "127.0.0.1:0", rateLimit: null } });
    dnsAt = registry.frontDoors.dnsAddress!;
    good = await FakeAgent.connect(nats.url, "host-a");
    await good.register([
      inst("o1", { address: "10.0.0.1", port: 8001, tags: ["v1", "Primary"], zone: "zone-a", weight: 100 }),
      inst("o2", { address: "10.0.0.2", port: 8002, tags: ["v2"], zone: "zone-b", status: "warning", weight: 40 }),
      inst("o3", { address: "10.0.0.3", port: 8003, status: "critical" }),
      inst("o4", { address: "10.0.0.4", port: 8004, status: "draining" }),
      inst("o6", { address: "fd00::6", port: 8006 }),
      inst("p1", { service: "payments", address: "10.0.1.1", port: 9001, status: "critical" }),
      ...Array.from({ length: 60 }, (_, n) => inst(`b${n}`, { service: "big", address: `10.9.${n >> 8}.${n & 255}`, port: 7000 + n })),
    ]);
    stopBeat = good.beat();
    // A host that goes silent: its instance becomes agent-lost (critical) after 3 × 200 ms.
    lost = await FakeAgent.connect(nats.url, "host-lost");
    await lost.register([inst("o5", { address: "10.0.0.5", port: 8005 })]);
    await waitFor(() => registry.memory.get("orders", "o5")?.reason === "agent-lost", { timeoutMs: 10_000, what: "o5 agent-lost" });
    await waitFor(() => registry.memory.service("big").instances.length === 60, { timeoutMs: 10_000, what: "60 big instances" });
  });

  after(async () => {
    stopBeat?.();
    await good?.close();
    await lost?.close();
    await registry?.close();
    await nats?.close();
  });

  it("dns - A gives passing and warning instances, never critical, draining or agent-lost (dig)", async () => {
    const r = await dig(dnsAt, "orders.service.roster", "A");
    assert.equal(r.status, "NOERROR");
    assert.ok(r.flags.includes("aa"), r.raw);
    assert.deepEqual(r.answer.map((a) => a.data).sort(), ["10.0.0.1", "10.0.0.2"]);
    assert.ok(r.answer.every((a) => a.ttl === 0 && a.type === "A"));
    const six = await dig(dnsAt, "orders.service.roster", "AAAA");
    assert.deepEqual(six.answer.map((a) => a.data), ["fd00::6"]);
  });

  it("dns - SRV carries port and weight, and its target resolves (additional section and a second query)", async () => {
    const r = await dig(dnsAt, "orders.service.roster", "SRV");
    assert.equal(r.status, "NOERROR");
    const byPort = new Map(r.answer.map((a) => [a.data.split(" ")[2], a.data.split(" ")]));
    assert.deepEqual([...byPort.keys()].sort(), ["8001", "8002", "8006"]);
    assert.equal(byPort.get("8001")![1], "100");
    assert.equal(byPort.get("8002")![1], "20", "a warning instance serves at half weight");
    const target = byPort.get("8001")![3]!;
    assert.equal(target, "0a000001.addr.roster.");
    assert.ok(r.additional.some((a) => a.name === target && a.data === "10.0.0.1"), r.raw);
    const t = await dig(dnsAt, target, "A");
    assert.deepEqual(t.answer.map((a) => a.data), ["10.0.0.1"]);
  });

  it("dns - tag, zone and RFC 2782 names filter; names are case-insensitive", async () => {
    assert.deepEqual((await dig(dnsAt, "v2.orders.service.roster")).answer.map((a) => a.data), ["10.0.0.2"]);
    assert.deepEqual((await dig(dnsAt, "PRIMARY.Orders.SERVICE.Roster")).answer.map((a) => a.data), ["10.0.0.1"]);
    assert.deepEqual((await dig(dnsAt, "orders.service.zone-b.roster")).answer.map((a) => a.data), ["10.0.0.2"]);
    assert.deepEqual((await dig(dnsAt, "v1.orders.service.zone-b.roster")).answer, []);
    const srv = await dig(dnsAt, "_orders._tcp.service.roster", "SRV");
    assert.equal(srv.answer.length, 3);
    const tagged = await dig(dnsAt, "_orders._v1.service.roster", "SRV");
    assert.deepEqual(tagged.answer.map((a) => a.data.split(" ")[2]), ["8001"]);
  });

  it("dns - NXDOMAIN with SOA for an unknown service; empty NOERROR with SOA for a known one with nothing passing", async () => {
    const unknown = await dig(dnsAt, "nope.service.roster");
    assert.equal(unknown.status, "NXDOMAIN");
    assert.equal(unknown.authority[0]?.type, "SOA", unknown.raw);
    const bad = await dig(dnsAt, "what.ever.roster");
    assert.equal(bad.status, "NXDOMAIN");
    const none = await dig(dnsAt, "payments.service.roster");
    assert.equal(none.status, "NOERROR");
    assert.deepEqual(none.answer, []);
    assert.equal(none.authority[0]?.type, "SOA");
    const mx = await dig(dnsAt, "orders.service.roster", "MX");
    assert.equal(mx.status, "NOERROR", "a type we do not serve is NODATA, not an error");
    assert.deepEqual(mx.answer, []);
    const soa = await dig(dnsAt, "roster", "SOA");
    assert.equal(soa.answer[0]?.type, "SOA");
  });

  it("dns - answers are shuffled per query", async () => {
    const firsts = new Set<string>();
    for (let n = 0; n < 20 && firsts.size < 2; n++) firsts.add((await dig(dnsAt, "big.service.roster", "+tcp")).answer[0]!.data);
    assert.ok(firsts.size >= 2, "the first answer never changed over 20 queries");
  });

  it("dns - a UDP answer too big is truncated (TC) and the full answer comes over TCP", async () => {
    const udp = await dig(dnsAt, "big.service.roster", "SRV", "+ignore", "+noedns");
    assert.ok(udp.flags.includes("tc"), udp.raw);
    assert.ok(udp.answer.length > 0 && udp.answer.length < 60, `${udp.answer.length} answers over UDP`);
    const retried = await dig(dnsAt, "big.service.roster", "SRV", "+noedns");
    assert.ok(retried.retriedTcp, "dig retries over TCP by itself");
    assert.equal(retried.answer.length, 60);
    const tcp = await dig(dnsAt, "big.service.roster", "SRV", "+tcp");
    assert.equal(tcp.answer.length, 60);
    assert.equal(tcp.additional.filter((a) => a.type === "A").length, 60);
    // With EDNS the UDP answer may be bigger, but never past dns.maxUdpSize (1232).
    const edns = await dig(dnsAt, "big.service.roster", "A", "+ignore", "+bufsize=4096");
    const raw = await udpAsk(dnsAt, dnsPacket.encode({ type: "query", id: 7, questions: [{ type: "A", name: "big.service.roster" }], additionals: [{ type: "OPT", name: ".", udpPayloadSize: 4096 } as unknown as dnsPacket.Answer] }));
    assert.ok(raw && raw.length <= 1232, `UDP answer of ${raw?.length} bytes`);
    assert.ok(edns.answer.length > 0);
  });

  it("dns - Node's dns.promises.Resolver reads A and SRV", async () => {
    const resolver = new Resolver({ timeout: 2000, tries: 2 });
    resolver.setServers([dnsAt]);
    assert.deepEqual((await resolver.resolve4("orders.service.roster")).sort(), ["10.0.0.1", "10.0.0.2"]);
    const srv = await resolver.resolveSrv("orders.service.roster");
    assert.deepEqual(srv.map((s) => s.port).sort(), [8001, 8002, 8006]);
    const target = srv.find((s) => s.port === 8001)!.name;
    assert.deepEqual(await resolver.resolve4(target), ["10.0.0.1"]);
    await assert.rejects(resolver.resolve4("nope.service.roster"), (e: NodeJS.ErrnoException) => e.code === "ENOTFOUND");
    // c-ares retries a truncated answer over TCP itself.
    assert.equal((await resolver.resolve4("big.service.roster")).length, 60);
  });

  it("dns - refuses what is not ours: other zones, other classes, zone transfers, other opcodes", async () => {
    assert.equal((await dig(dnsAt, "example.com", "A")).status, "REFUSED");
    assert.equal((await dig(dnsAt, "version.bind", "TXT", "-c", "CH")).status, "REFUSED");
    const axfr = await dig(dnsAt, "roster", "AXFR");
    assert.match(axfr.raw, /Transfer failed|REFUSED/);
    const notify = await udpAsk(dnsAt, dnsPacket.encode({ type: "query", id: 9, flags: 4 << 11, questions: [{ type: "SOA", name: "roster" }] }));
    assert.equal(rcodeOf(notify!), "NOTIMP");
  });

  it("dns - malformed and oversized queries get FORMERR with their id; responses and runts get nothing", async () => {
    const garbage = Buffer.from([0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3f, 0x61]);
    const a = (await udpAsk(dnsAt, garbage))!;
    assert.equal(dnsPacket.decode(a).id, 0x1234);
    assert.equal(rcodeOf(a), "FORMERR");
    const big = Buffer.concat([query("orders.service.roster"), Buffer.alloc(2000)]);
    assert.equal(rcodeOf((await udpAsk(dnsAt, big))!), "FORMERR");
    const two = dnsPacket.encode({ type: "query", id: 5, questions: [{ type: "A", name: "a.service.roster" }, { type: "A", name: "b.service.roster" }] });
    assert.equal(rcodeOf((await udpAsk(dnsAt, two))!), "FORMERR");
    assert.equal(await udpAsk(dnsAt, Buffer.from([1, 2, 3]), 300), null);
    const response = dnsPacket.encode({ type: "response", id: 1, questions: [{ type: "A", name: "orders.service.roster" }] });
    assert.equal(await udpAsk(dnsAt, response, 300), null, "never answers a response (no loops)");
  });

  it("dns - fuzzed queries (random bytes and mutated real queries) never crash it and get well-formed answers", async () => {
    const real = query("orders.service.roster", "SRV");
    const mutated = fc
      .array(fc.tuple(fc.nat(real.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 })
      .map((edits) => {
        const b = Buffer.from(real);
        for (const [at, v] of edits) b[at] = v;
        return b;
      });
    const names = fc.array(fc.stringMatching(/^[a-zA-Z0-9_-]{1,20}$/), { minLength: 0, maxLength: 6 }).map((l) => [...l, "roster"].join("."));
    const types = fc.constantFrom("A", "AAAA", "SRV", "ANY", "TXT", "MX", "PTR", "SOA", "NS", "CNAME", "CAA");
    const wellFormed = fc.tuple(names, types).map(([n, t]) => query(n, t));
    // Questions whose labels are arbitrary bytes (dns-packet reads them as UTF-8).
    const rawLabels = fc
      .tuple(fc.array(fc.uint8Array({ minLength: 1, maxLength: 63 }), { minLength: 1, maxLength: 4 }), fc.integer({ min: 0, max: 65535 }))
      .map(([labels, type]) => {
        const name = Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([6]), Buffer.from("roster"), Buffer.from([0])]);
        const tail = Buffer.alloc(4);
        tail.writeUInt16BE(type, 0);
        tail.writeUInt16BE(1, 2);
        return Buffer.concat([Buffer.from([0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]), name, tail]);
      });
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.uint8Array({ minLength: 0, maxLength: 600 }).map((u) => Buffer.from(u)), mutated, wellFormed, rawLabels), async (payload) => {
        const silent = payload.length < 12 || (payload[2]! & 0x80) !== 0;
        const out = await udpAsk(dnsAt, payload, silent ? 100 : 3000); // generous: the machine is shared
        if (silent) return out === null;
        assert.ok(out, "a query with a header gets an answer");
        const d = dnsPacket.decode(out);
        assert.equal(d.id, payload.readUInt16BE(0));
        assert.equal(d.type, "response");
        assert.ok(out.length <= 1232);
        return true;
      }),
      { numRuns: 300 },
    );
    // Still answering, nothing logged as a crash.
    assert.equal((await dig(dnsAt, "orders.service.roster")).answer.length, 2);
    assert.equal(registry.frontDoors.dns!.stats.errors, 0);
  });

  it("dns - a health flip reaches the answers at once", async () => {
    await good.health("o1", "critical");
    await waitFor(async () => !(await dig(dnsAt, "orders.service.roster")).answer.some((a) => a.data === "10.0.0.1"), { timeoutMs: 5000, what: "o1 gone from DNS" });
    await good.health("o1", "passing");
    await waitFor(async () => (await dig(dnsAt, "orders.service.roster")).answer.some((a) => a.data === "10.0.0.1"), { timeoutMs: 5000, what: "o1 back in DNS" });
  });
});

describe("dns - limits", () => {
  let nats: NatsServer;
  let writer: Registry;
  let standby: Registry;

  before(async () => {
    nats = await NatsServer.start();
    const over = { dns: { listen: "127.0.0.1:0", rateLimit: { perSecond: 5, burst: 10 } }, consulApi: { listen: "127.0.0.1:0" }, lease: { enabled: true, ttl: "1500ms", margin: "500ms" } };
    writer = await startRegistry(nats.url, over);
    standby = await startRegistry(nats.url, over);
  });

  after(async () => {
    await standby?.close();
    await writer?.close();
    await nats?.close();
  });

  it("dns - a standby answers from its mirror like the writer (DNS and the Consul API)", async () => {
    assert.equal(standby.status().role, "standby");
    const agent = await FakeAgent.connect(nats.url, "host-s");
    await agent.register([inst("s1", { address: "10.1.0.1" })]);
    const stop = agent.beat();
    try {
      for (const r of [writer, standby]) {
        await waitFor(async () => (await dig(r.frontDoors.dnsAddress!, "orders.service.roster", "+tcp")).answer.length === 1, { timeoutMs: 5000, what: "orders on both" });
        const res = await fetch(`${r.frontDoors.consulUrl}/v1/health/service/orders?passing`);
        assert.deepEqual(((await res.json()) as Array<{ Service: { ID: string } }>).map((e) => e.Service.ID), ["s1"]);
        assert.equal(res.headers.get("x-consul-index"), String(r.memory.serviceRevision("orders").revision));
      }
    } finally {
      stop();
      await agent.close();
    }
  });

  it("dns - a DNS port already in use fails the start, naming the listener", async () => {
    const taken = createSocket("udp4");
    taken.bind(0, "127.0.0.1");
    await once(taken, "listening");
    const r = build(parseConfig({ nats: { url: nats.url }, http: { listen: "127.0.0.1:0" }, dns: { listen: `127.0.0.1:${taken.address().port}` } }), { logger: silent });
    try {
      await assert.rejects(r.start(), /cannot start the DNS listener \(127\.0\.0\.1:\d+\): .*EADDRINUSE/);
    } finally {
      await r.close();
      taken.close();
    }
  });

  it("dns - UDP is rate-limited per source (amplification): past the burst, queries are dropped or told TC", async () => {
    const at = writer.frontDoors.dnsAddress!;
    const answers = await Promise.all(Array.from({ length: 40 }, (_, n) => udpAsk(at, query("orders.service.roster", "A", n), 800)));
    const full = answers.filter((a) => a && !dnsPacket.decode(a).flag_tc).length;
    const tc = answers.filter((a) => a && dnsPacket.decode(a).flag_tc).length;
    assert.ok(full <= 12, `${full} full answers within the burst of 10`);
    assert.ok(tc >= 5, `${tc} truncated replies send real clients to TCP`);
    // TCP is not limited (cannot be spoofed): dig +tcp still answers.
    assert.equal((await dig(at, "orders.service.roster", "+tcp")).status, "NOERROR");
  });
});
