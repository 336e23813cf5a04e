import assert from "node:assert/strict";
import { describe, it } from "node:test";
import dnsPacket from "dns-packet";
import type { CatalogInstance } from "roster-schemas";
import { answerDns, hexToIp, ipToHex, parseName, qualifies, type DnsAnswerOptions, type DnsLookup } from "../../src/core/dns-answer.js";
import { RatePerSource } from "../../src/core/rate-per-source.js";

const OPTS: DnsAnswerOptions = { domain: "roster", ttlSeconds: 0, onlyPassing: false, maxUdpBytes: 1232 };

function instance(id: string, over: Partial<CatalogInstance> = {}): CatalogInstance {
  return { id, service: "orders", host: "h", address: "10.0.0.1", port: 80, tags: [], meta: {}, weight: 100, status: "passing", checks: [], epoch: 1, registeredAt: 0, updatedAt: 0, ...over };
}

function lookupOf(services: Record<string, CatalogInstance[]>): DnsLookup {
  return { service: (n) => (n in services ? { known: true, instances: services[n]! } : { known: false, instances: [] }), serial: () => 7 };
}

type Decoded = dnsPacket.DecodedPacket & { rcode: string };
/** dns-packet's Answer union includes OPT, which has no data. */
const dataOf = (a: dnsPacket.Answer | undefined): unknown => (a as { data?: unknown } | undefined)?.data;
function ask(name: string, type: string, lookup: DnsLookup, opts = OPTS, transport: "udp" | "tcp" = "udp", random = () => 0.5) {
  const q = dnsPacket.encode({ type: "query", id: 99, questions: [{ type: type as "A", name }] });
  const r = answerDns(q, opts, lookup, { transport, random });
  return { ...r, packet: r.response ? (dnsPacket.decode(r.response) as Decoded) : null };
}

describe("dns-answer", () => {
  it("dns-answer - parses the service, tag, zone, RFC 2782 and addr forms", () => {
    assert.deepEqual(parseName(["orders", "service"]), { kind: "service", service: "orders" });
    assert.deepEqual(parseName(["v1", "orders", "service"]), { kind: "service", service: "orders", tag: "v1" });
    assert.deepEqual(parseName(["orders", "service", "zone-a"]), { kind: "service", service: "orders", zone: "zone-a" });
    assert.deepEqual(parseName(["v1", "orders", "service", "zone-a"]), { kind: "service", service: "orders", tag: "v1", zone: "zone-a" });
    assert.deepEqual(parseName(["_orders", "_tcp", "service"]), { kind: "service", service: "orders" });
    assert.deepEqual(parseName(["_orders", "_v1", "service"]), { kind: "service", service: "orders", tag: "v1" });
    assert.deepEqual(parseName(["0a000001", "addr"]), { kind: "addr", address: "10.0.0.1" });
    assert.deepEqual(parseName([]), { kind: "apex" });
    for (const bad of [["service"], ["a", "b", "c", "service"], ["orders", "service", "z", "extra"], ["xyz", "addr"], ["orders"]]) assert.deepEqual(parseName(bad), { kind: "none" }, bad.join("."));
  });

  it("dns-answer - hex addresses round-trip for IPv4 and IPv6", () => {
    assert.equal(ipToHex("10.0.0.1"), "0a000001");
    assert.equal(hexToIp(ipToHex("10.0.0.1")!), "10.0.0.1");
    assert.equal(ipToHex("fd00::6"), "fd000000000000000000000000000006");
    assert.equal(hexToIp("fd000000000000000000000000000006"), "fd00:0:0:0:0:0:0:6");
    assert.equal(ipToHex("db.internal"), null);
    assert.equal(ipToHex("1:2:3"), null);
  });

  it("dns-answer - only passing (and warning unless onlyPassing) instances qualify; never agent-lost", () => {
    assert.ok(qualifies(instance("a"), true));
    assert.ok(qualifies(instance("a", { status: "warning" }), false));
    assert.ok(!qualifies(instance("a", { status: "warning" }), true));
    assert.ok(!qualifies(instance("a", { status: "draining" }), false));
    assert.ok(!qualifies(instance("a", { status: "critical" }), false));
    assert.ok(!qualifies(instance("a", { reason: "agent-lost" }), false));
  });

  it("dns-answer - the shuffle comes from the injected random", () => {
    const l = lookupOf({ orders: [instance("a", { address: "10.0.0.1" }), instance("b", { address: "10.0.0.2" }), instance("c", { address: "10.0.0.3" })] });
    const first = (r: () => number) => dataOf(ask("orders.service.roster", "A", l, OPTS, "udp", r).packet!.answers![0]) as string;
    assert.equal(first(() => 0.99), "10.0.0.1");
    assert.equal(first(() => 0), "10.0.0.2");
  });

  it("dns-answer - a hostname address is a CNAME for A and the SRV target itself", () => {
    const l = lookupOf({ orders: [instance("a", { address: "db.internal", port: 5432 })] });
    assert.deepEqual(ask("orders.service.roster", "A", l).packet!.answers!.map((a) => [a.type, dataOf(a)]), [["CNAME", "db.internal"]]);
    const srv = ask("orders.service.roster", "SRV", l).packet!;
    assert.equal((dataOf(srv.answers![0]) as { target: string }).target, "db.internal");
    assert.equal(srv.additionals!.length, 0);
  });

  it("dns-answer - UDP answers fit 512 bytes without EDNS (TC set), TCP gets everything", () => {
    const many = Array.from({ length: 100 }, (_, n) => instance(`i${n}`, { address: `10.1.0.${n}`, port: 1000 + n }));
    const l = lookupOf({ orders: many });
    const udp = ask("orders.service.roster", "SRV", l);
    assert.ok(udp.response!.length <= 512);
    assert.ok(udp.packet!.flag_tc);
    assert.ok(udp.outcome!.truncated);
    assert.ok(udp.packet!.answers!.length > 0 && udp.packet!.answers!.length < 100);
    assert.equal(udp.packet!.additionals!.length, udp.packet!.answers!.length, "SRV and its address stay paired");
    const tcp = ask("orders.service.roster", "SRV", l, OPTS, "tcp");
    assert.equal(tcp.packet!.answers!.length, 100);
    assert.ok(!tcp.packet!.flag_tc);
  });

  it("dns-answer - a name of bytes that would not encode back is FORMERR, never a malformed answer", () => {
    const hdr = Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    const label = Buffer.concat([Buffer.from([40]), Buffer.alloc(40, 0xff)]);
    const q = Buffer.concat([hdr, label, Buffer.from([6]), Buffer.from("roster"), Buffer.from([0, 0, 1, 0, 1])]);
    const r = answerDns(q, OPTS, lookupOf({}), { transport: "udp", random: Math.random });
    const d = dnsPacket.decode(r.response!) as Decoded;
    assert.equal(d.rcode, "FORMERR");
    assert.equal(d.id, 0x1234);
  });

  it("dns-answer - the SOA serial is the catalog revision and its minimum is the TTL", () => {
    const r = ask("nope.service.roster", "A", lookupOf({}), { ...OPTS, ttlSeconds: 5 });
    assert.equal(r.packet!.rcode, "NXDOMAIN");
    const soa = dataOf(r.packet!.authorities![0]) as { serial: number; minimum: number };
    assert.equal(soa.serial, 7);
    assert.equal(soa.minimum, 5);
  });
});

describe("rate-per-source", () => {
  it("rate-per-source - a burst, then the steady rate, per source", () => {
    const r = new RatePerSource({ perSecond: 10, burst: 3 });
    assert.deepEqual([1, 2, 3, 4].map(() => r.take("a", 0)), [true, true, true, false]);
    assert.ok(r.take("b", 0), "another source has its own bucket");
    assert.ok(!r.take("a", 50));
    assert.ok(r.take("a", 100), "one token per 100 ms at 10/s");
  });

  it("rate-per-source - keeps at most maxSources buckets", () => {
    const r = new RatePerSource({ perSecond: 1, burst: 1, maxSources: 2 });
    r.take("a", 0);
    r.take("b", 0);
    r.take("c", 0);
    assert.equal(r.sources, 2);
  });
});
