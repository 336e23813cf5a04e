/**
 * The DNS interface's answers, pure: a query's bytes in, a response's bytes out (or null: no
 * answer at all). No sockets, no clock; randomness (the per-query shuffle) is injected.
 *
 * Names served under `<domain>` (default `roster`):
 *   <service>.service.<domain>              A/AAAA/SRV of the instances that qualify
 *   <tag>.<service>.service.<domain>        ... having that tag
 *   <service>.service.<zone>.<domain>       ... in that zone (tag and zone combine)
 *   _<service>._<tag|tcp>.service.<domain>  RFC 2782 form (_tcp/_udp mean "no tag"), as Consul
 *   <hex-ip>.addr.<domain>                  the SRV targets: an IP spelled in hex, as Consul
 *
 * Encoding and decoding are dns-packet's; this file decides what to say.
 */
import dnsPacket from "dns-packet";
import type { Answer, DecodedPacket, Packet, Question } from "dns-packet";
import type { CatalogInstance } from "roster-schemas";

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export type Rcode = keyof typeof RCODE;

/** Largest query we read: real queries are well under 300 bytes; more is garbage or abuse. */
export const MAX_QUERY_BYTES = 1024;
/** A UDP answer without EDNS (RFC 1035). */
export const CLASSIC_UDP_BYTES = 512;

export interface DnsAnswerOptions {
  /** Lower case, no trailing dot, e.g. "roster". */
  domain: string;
  /** TTL of every record, seconds (also the SOA minimum: how long a "no" is cached). */
  ttlSeconds: number;
  /** True: only passing instances; false: passing and warning (Consul's default). */
  onlyPassing: boolean;
  /** Largest UDP answer whatever the client's EDNS buffer says (caps amplification). */
  maxUdpBytes: number;
}

export interface DnsLookup {
  /**
   * The instances of every service whose name equals `lowerName` ignoring case (DNS names are
   * case-insensitive, catalog names are not); known false when none exists.
   */
  service(lowerName: string): { known: boolean; instances: readonly CatalogInstance[] };
  /** The SOA serial (the catalog revision). */
  serial(): number;
}

export interface DnsQueryContext {
  transport: "udp" | "tcp";
  /** Returns [0, 1): the shuffle. */
  random: () => number;
}

/** What happened, for metrics and logs. */
export interface DnsOutcome {
  rcode: Rcode;
  truncated: boolean;
  answers: number;
}

export interface DnsResult {
  response: Buffer | null;
  outcome: DnsOutcome | null;
}

const FLAG_QR = 0x8000;
const OPCODE_SHIFT = 11;

/** Whether an instance may be given to a caller: never draining, critical or agent-lost. */
export function qualifies(i: CatalogInstance, onlyPassing: boolean): boolean {
  if (i.reason === "agent-lost") return false;
  return i.status === "passing" || (!onlyPassing && i.status === "warning");
}

/** A parsed query name, relative to the domain. */
export type ParsedName =
  | { kind: "apex" }
  | { kind: "service"; service: string; tag?: string; zone?: string }
  | { kind: "addr"; address: string }
  | { kind: "none" };

/** `labels`: lower case, the domain's labels already removed. */
export function parseName(labels: readonly string[]): ParsedName {
  if (labels.length === 0) return { kind: "apex" };
  if (labels.length === 2 && labels[1] === "addr") {
    const address = hexToIp(labels[0]!);
    return address ? { kind: "addr", address } : { kind: "none" };
  }
  const at = labels.indexOf("service");
  // service then at most one zone label; before it the service and at most one tag
  if (at < 1 || at > 2 || labels.length - at > 2) return { kind: "none" };
  const zone = labels[at + 1];
  let service = labels[at - 1]!;
  let tag = at === 2 ? labels[0]! : undefined;
  // RFC 2782: _service._proto (or _service._tag)
  if (service.startsWith("_") && tag === undefined) return { kind: "none" };
  if (tag !== undefined && tag.startsWith("_") && service.startsWith("_")) {
    [service, tag] = [tag.slice(1), service.slice(1)];
    if (tag === "tcp" || tag === "udp") tag = undefined;
  }
  if (service === "" || tag === "") return { kind: "none" };
  return { kind: "service", service, ...(tag !== undefined ? { tag } : {}), ...(zone !== undefined ? { zone } : {}) };
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** The 16 bytes of an IPv6 address (null if it is not one). */
function ipv6Bytes(a: string): Buffer | null {
  if (!/^[0-9a-fA-F:.]+$/.test(a) || a.split("::").length > 2) return null;
  const [head, tail] = a.includes("::") ? a.split("::") : [a, undefined];
  const parse = (s: string | undefined) => (s ? s.split(":") : []);
  const h = parse(head);
  const t = parse(tail);
  const groups: number[] = [];
  const push = (parts: string[]) => {
    for (const p of parts) {
      if (p.includes(".")) {
        if (!IPV4.test(p)) return false;
        const o = p.split(".").map(Number);
        groups.push((o[0]! << 8) | o[1]!, (o[2]! << 8) | o[3]!);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return false;
        groups.push(parseInt(p, 16));
      }
    }
    return true;
  };
  const hg: number[] = [];
  if (!push(h)) return null;
  hg.push(...groups.splice(0));
  if (!push(t)) return null;
  const tg = groups.splice(0);
  const fill = 8 - hg.length - tg.length;
  if (tail === undefined ? fill !== 0 : fill < 1) return null;
  const all = [...hg, ...new Array<number>(tail === undefined ? 0 : fill).fill(0), ...tg];
  const b = Buffer.alloc(16);
  all.forEach((g, i) => b.writeUInt16BE(g, i * 2));
  return b;
}

export function addressFamily(address: string): 4 | 6 | null {
  if (IPV4.test(address)) return 4;
  if (ipv6Bytes(address) !== null) return 6;
  return null;
}

/** `10.0.0.1` → `0a000001`; IPv6 → 32 hex digits. */
export function ipToHex(address: string): string | null {
  const f = addressFamily(address);
  if (f === 4) return address.split(".").map((o) => Number(o).toString(16).padStart(2, "0")).join("");
  if (f === 6) return ipv6Bytes(address)!.toString("hex");
  return null;
}

export function hexToIp(hex: string): string | null {
  if (/^[0-9a-f]{8}$/.test(hex)) return [0, 2, 4, 6].map((i) => parseInt(hex.slice(i, i + 2), 16)).join(".");
  if (/^[0-9a-f]{32}$/.test(hex)) {
    const groups: string[] = [];
    for (let i = 0; i < 32; i += 4) groups.push(parseInt(hex.slice(i, i + 4), 16).toString(16));
    return groups.join(":");
  }
  return null;
}

function shuffle<T>(list: T[], random: () => number): T[] {
  for (let i = list.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [list[i], list[j]] = [list[j]!, list[i]!];
  }
  return list;
}

/** A bare header answer: used when the question cannot be trusted (FORMERR, NOTIMP). */
function headerOnly(id: number, opcodeBits: number, rd: number, rcode: number): Buffer {
  return dnsPacket.encode({ type: "response", id, flags: opcodeBits | rd | rcode, questions: [] });
}

/** Answers one DNS query. Never throws (the caller still guards: a bug must not kill the listener). */
export function answerDns(query: Buffer, opts: DnsAnswerOptions, lookup: DnsLookup, ctx: DnsQueryContext): DnsResult {
  if (query.length < 12) return { response: null, outcome: null }; // no id to answer to
  const id = query.readUInt16BE(0);
  const rawFlags = query.readUInt16BE(2);
  if (rawFlags & FLAG_QR) return { response: null, outcome: null }; // a response: never answer one (no loops)
  const opcode = (rawFlags >> OPCODE_SHIFT) & 0xf;
  const rd = rawFlags & dnsPacket.RECURSION_DESIRED;
  const fail = (rcode: Rcode): DnsResult => ({
    response: headerOnly(id, opcode << OPCODE_SHIFT, rd, RCODE[rcode]),
    outcome: { rcode, truncated: false, answers: 0 },
  });
  if (query.length > MAX_QUERY_BYTES) return fail("FORMERR");
  if (opcode !== 0) return fail("NOTIMP");
  let packet: DecodedPacket;
  try {
    packet = dnsPacket.decode(query);
  } catch {
    return fail("FORMERR");
  }
  if (packet.questions?.length !== 1) return fail("FORMERR");
  const question = packet.questions[0]!;
  if (typeof question.name !== "string" || typeof question.type !== "string") return fail("FORMERR");
  // dns-packet reads labels as UTF-8 text: a label of other bytes would not encode back to what was
  // asked (found by the fuzz test: 40 bytes of 0xff became a 120-byte "label"). No name of ours has
  // such bytes, and echoing the question needs the exact name back.
  if (!echoable(question.name)) return fail("FORMERR");
  const opt = packet.additionals?.find((a) => a.type === "OPT") as { udpPayloadSize?: number } | undefined;
  const limit =
    ctx.transport === "tcp" ? 65535 : Math.max(CLASSIC_UDP_BYTES, Math.min(opts.maxUdpBytes, opt?.udpPayloadSize ?? CLASSIC_UDP_BYTES));

  const respond = (rcode: Rcode, answers: Answer[], additionals: Answer[], soa: boolean): DnsResult => {
    const base: Packet = {
      type: "response",
      id,
      flags: dnsPacket.AUTHORITATIVE_ANSWER | rd | RCODE[rcode],
      questions: [question],
      answers,
      authorities: soa ? [soaRecord(opts, lookup.serial())] : [],
      additionals: opt ? [...additionals, optRecord(opts)] : additionals,
    };
    return fit(base, answers, additionals, limit, opt ? [optRecord(opts)] : [], rcode);
  };

  if (question.class !== "IN" && question.class !== "ANY") return fail("REFUSED");
  if (question.type === "AXFR" || (question.type as string) === "IXFR") return fail("REFUSED"); // no zone transfers
  const name = question.name.toLowerCase().replace(/\.$/, "");
  const domain = opts.domain;
  let labels: string[];
  if (name === domain) labels = [];
  else if (name.endsWith(`.${domain}`)) labels = name.slice(0, -domain.length - 1).split(".");
  else return fail("REFUSED"); // not our zone, and we never recurse

  const parsed = parseName(labels);
  const qtype: string = question.type; // dns-packet's types omit the meta type ANY (255)
  const wantsA = qtype === "A" || qtype === "ANY";
  const wantsAAAA = qtype === "AAAA" || qtype === "ANY";
  switch (parsed.kind) {
    case "none":
      return respond("NXDOMAIN", [], [], true);
    case "apex":
      if (question.type === "SOA") return respond("NOERROR", [soaRecord(opts, lookup.serial(), question.name)], [], false);
      return respond("NOERROR", [], [], true);
    case "addr": {
      const family = addressFamily(parsed.address);
      const answers: Answer[] = [];
      if ((family === 4 && wantsA) || (family === 6 && wantsAAAA)) answers.push({ type: family === 4 ? "A" : "AAAA", name: question.name, ttl: opts.ttlSeconds, data: parsed.address });
      return respond("NOERROR", answers, [], answers.length === 0);
    }
    case "service": {
      const found = lookup.service(parsed.service);
      if (!found.known) return respond("NXDOMAIN", [], [], true);
      const picked = shuffle(
        found.instances.filter(
          (i) =>
            qualifies(i, opts.onlyPassing) &&
            (parsed.tag === undefined || i.tags.some((t) => t.toLowerCase() === parsed.tag)) &&
            (parsed.zone === undefined || i.zone?.toLowerCase() === parsed.zone),
        ),
        ctx.random,
      );
      const answers: Answer[] = [];
      const additionals: Answer[] = [];
      if (question.type === "SRV") {
        for (const i of picked) {
          const hex = ipToHex(i.address);
          const target = hex ? `${hex}.addr.${domain}` : i.address;
          const weight = Math.min(65535, i.status === "warning" ? Math.max(1, Math.floor(i.weight / 2)) : i.weight);
          answers.push({ type: "SRV", name: question.name, ttl: opts.ttlSeconds, data: { priority: 1, weight, port: i.port, target } });
          if (hex) additionals.push({ type: addressFamily(i.address) === 4 ? "A" : "AAAA", name: target, ttl: opts.ttlSeconds, data: i.address });
        }
        // One additional per answer (same order), so cutting both at n keeps them paired.
      } else if (wantsA || wantsAAAA) {
        const seen = new Set<string>();
        for (const i of picked) {
          if (seen.has(i.address)) continue;
          seen.add(i.address);
          const family = addressFamily(i.address);
          if (family === 4 && wantsA) answers.push({ type: "A", name: question.name, ttl: opts.ttlSeconds, data: i.address });
          else if (family === 6 && wantsAAAA) answers.push({ type: "AAAA", name: question.name, ttl: opts.ttlSeconds, data: i.address });
          else if (family === null && qtype !== "ANY") answers.push({ type: "CNAME", name: question.name, ttl: opts.ttlSeconds, data: i.address });
        }
        // A name may not have a CNAME beside other data (RFC 1034): give one CNAME, or addresses.
        const addrs = answers.filter((a) => a.type !== "CNAME");
        if (addrs.length > 0 && addrs.length < answers.length) answers.splice(0, answers.length, ...addrs);
        else if (addrs.length === 0 && answers.length > 1) answers.splice(1);
      }
      return respond("NOERROR", answers, additionals, answers.length === 0);
    }
  }
}

const LABEL = /^[\x21-\x7e]{1,63}$/;

function echoable(name: string): boolean {
  if (name === "." || name === "") return true;
  return name.length <= 253 && name.replace(/\.$/, "").split(".").every((l) => LABEL.test(l));
}

function soaRecord(opts: DnsAnswerOptions, serial: number, name = opts.domain): Answer {
  return {
    type: "SOA",
    name,
    ttl: opts.ttlSeconds,
    data: {
      mname: `ns.${opts.domain}`,
      rname: `hostmaster.${opts.domain}`,
      serial: serial >>> 0,
      refresh: 3600,
      retry: 600,
      expire: 86400,
      minimum: opts.ttlSeconds,
    },
  };
}

function optRecord(opts: DnsAnswerOptions): Answer {
  return { type: "OPT", name: ".", udpPayloadSize: opts.maxUdpBytes, flags: 0 } as unknown as Answer;
}

/**
 * Encodes `base`, keeping as many answers as fit in `limit` bytes (with their additionals when
 * they are paired one to one, as SRV's are). TC is set when an answer had to go; additionals alone
 * going never sets it (RFC 2181 §9).
 */
function fit(base: Packet, answers: Answer[], additionals: Answer[], limit: number, tail: Answer[], rcode: Rcode): DnsResult {
  const full = dnsPacket.encode(base);
  if (full.length <= limit) return { response: full, outcome: { rcode, truncated: false, answers: answers.length } };
  const paired = additionals.length === answers.length;
  const build = (n: number, withAdditionals: boolean): Packet => ({
    ...base,
    answers: answers.slice(0, n),
    additionals: [...(withAdditionals && paired ? additionals.slice(0, n) : []), ...tail],
  });
  // All answers without additionals?
  const bare = dnsPacket.encode(build(answers.length, false));
  if (bare.length <= limit) {
    // Then as many additionals as fit, for the first answers.
    let lo = 0;
    let hi = answers.length;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      const p = { ...base, additionals: [...additionals.slice(0, mid), ...tail] };
      if (dnsPacket.encodingLength(p) <= limit) lo = mid;
      else hi = mid - 1;
    }
    const response = dnsPacket.encode({ ...base, additionals: [...additionals.slice(0, lo), ...tail] });
    return { response, outcome: { rcode, truncated: false, answers: answers.length } };
  }
  let lo = 0;
  let hi = answers.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (dnsPacket.encodingLength(build(mid, true)) <= limit) lo = mid;
    else hi = mid - 1;
  }
  const p = build(lo, true);
  p.flags = (p.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE;
  p.authorities = [];
  return { response: dnsPacket.encode(p), outcome: { rcode, truncated: true, answers: lo } };
}

export type { Question };
