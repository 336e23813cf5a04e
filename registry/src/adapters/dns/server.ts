/**
 * The registry's DNS listener: UDP and TCP on one address, answering from the same in-memory
 * catalog as the HTTP API (writer and standbys alike). The answers are core/dns-answer.ts's; this
 * file owns the sockets, the per-source rate limit and the TCP framing.
 *
 * Who may query: anyone who can reach the address (DNS has no credentials). It therefore listens
 * on loopback unless told otherwise, never recurses, answers only under its domain, caps UDP
 * answers at dns.maxUdpSize and rate-limits UDP per source address (docs/dns-and-consul.md).
 */
import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { createServer, type Server, type Socket as TcpSocket } from "node:net";
import { once } from "node:events";
import type { Logger } from "pino";
import { answerDns, RCODE, type DnsAnswerOptions, type DnsLookup, type Rcode } from "../../core/dns-answer.js";
import { RatePerSource } from "../../core/rate-per-source.js";
import type { CatalogMemory } from "../store/catalog-memory.js";
import dnsPacket from "dns-packet";

export interface DnsServerOptions extends DnsAnswerOptions {
  /** "host:port"; port 0 picks one (the same for UDP and TCP). */
  host: string;
  port: number;
  /** UDP queries per second per source address (null: no limit). */
  rateLimit: { perSecond: number; burst: number } | null;
  maxTcpConnections: number;
  /** A TCP connection idle this long is closed. */
  tcpIdleMs: number;
}

export interface DnsServerDeps {
  catalog: Pick<CatalogMemory, "service" | "serviceRevision" | "services" | "serviceCount" | "revision">;
  /** False until the catalog is loaded: every answer is then SERVFAIL (we do not know yet). */
  loaded: () => boolean;
  logger: Logger;
  now?: () => number;
  random?: () => number;
}

export interface DnsStats {
  queries: number;
  byRcode: Partial<Record<Rcode, number>>;
  truncated: number;
  /** UDP queries over the per-source rate: dropped, or answered with an empty TC reply. */
  rateLimited: number;
  /** Datagrams ignored: too short to answer, or responses. */
  ignored: number;
  tcpConnections: number;
  errors: number;
}

const MAX_TCP_BUFFER = 2 + 65535;
const MAX_UNREAD_BYTES = 1024 * 1024;

/** Maps lower-cased names to the catalog's names; rebuilt only when a service is added (names never go). */
class CaseIndex {
  private built = -1;
  private byLower = new Map<string, string[]>();
  constructor(private readonly catalog: DnsServerDeps["catalog"]) {}

  names(lower: string): string[] {
    if (this.built !== this.catalog.serviceCount) {
      const m = new Map<string, string[]>();
      for (const s of this.catalog.services()) {
        const k = s.name.toLowerCase();
        const list = m.get(k);
        if (list) list.push(s.name);
        else m.set(k, [s.name]);
      }
      this.byLower = m;
      this.built = this.catalog.serviceCount;
    }
    return this.byLower.get(lower) ?? [];
  }
}

export class DnsServer {
  private udp: Socket | null = null;
  private tcp: Server | null = null;
  private readonly sockets = new Set<TcpSocket>();
  private readonly limiter: RatePerSource | null;
  private readonly lookup: DnsLookup;
  private readonly now: () => number;
  private readonly random: () => number;
  private limitedSlip = 0;
  readonly stats: DnsStats = { queries: 0, byRcode: {}, truncated: 0, rateLimited: 0, ignored: 0, tcpConnections: 0, errors: 0 };
  address = "";

  constructor(
    private readonly opts: DnsServerOptions,
    private readonly deps: DnsServerDeps,
  ) {
    this.limiter = opts.rateLimit ? new RatePerSource(opts.rateLimit) : null;
    this.now = deps.now ?? Date.now;
    this.random = deps.random ?? Math.random;
    const index = new CaseIndex(deps.catalog);
    // memory.service() copies and sorts: keep its answer per service until the revision moves.
    const views = new Map<string, ReturnType<typeof deps.catalog.service>>();
    const view = (name: string) => {
      const rev = deps.catalog.serviceRevision(name);
      const hit = views.get(name);
      if (hit && hit.revision === rev.revision && hit.known === rev.known) return hit;
      const v = deps.catalog.service(name);
      views.set(name, v); // bounded: names come from the catalog (CaseIndex), never from the query
      return v;
    };
    this.lookup = {
      service: (lower) => {
        const names = index.names(lower);
        if (names.length === 1) return view(names[0]!);
        const list = names.map(view);
        return { known: list.some((v) => v.known), instances: list.flatMap((v) => v.instances) };
      },
      serial: () => deps.catalog.revision,
    };
  }

  /** Binds UDP, then TCP on the same port. */
  async start(): Promise<string> {
    const family = this.opts.host.includes(":") ? "udp6" : "udp4";
    for (let attempt = 1; ; attempt++) {
      const udp = createSocket({ type: family });
      udp.on("message", (msg, rinfo) => this.onDatagram(udp, msg, rinfo));
      udp.on("error", (err) => this.deps.logger.warn({ err: String(err) }, "DNS UDP socket error"));
      udp.bind(this.opts.port, this.opts.host);
      await once(udp, "listening");
      const port = udp.address().port;
      const tcp = createServer({ pauseOnConnect: false }, (s) => this.onTcp(s));
      tcp.maxConnections = this.opts.maxTcpConnections;
      try {
        tcp.listen(port, this.opts.host);
        await once(tcp, "listening");
      } catch (err) {
        udp.close();
        // Port 0: the UDP port's TCP twin was taken by someone else; pick another pair.
        if (this.opts.port === 0 && attempt < 5) continue;
        throw err;
      }
      this.udp = udp;
      this.tcp = tcp;
      this.address = `${this.opts.host.includes(":") ? `[${this.opts.host}]` : this.opts.host}:${port}`;
      return this.address;
    }
  }

  get port(): number {
    return this.udp?.address().port ?? 0;
  }

  private answer(query: Buffer, transport: "udp" | "tcp"): Buffer | null {
    this.stats.queries++;
    try {
      if (!this.deps.loaded()) return this.servfail(query);
      const r = answerDns(query, this.opts, this.lookup, { transport, random: this.random });
      if (!r.outcome) this.stats.ignored++;
      else {
        this.stats.byRcode[r.outcome.rcode] = (this.stats.byRcode[r.outcome.rcode] ?? 0) + 1;
        if (r.outcome.truncated) this.stats.truncated++;
      }
      return r.response;
    } catch (err) {
      this.stats.errors++;
      this.deps.logger.error({ err: String(err) }, "DNS answer failed");
      return this.servfail(query);
    }
  }

  private servfail(query: Buffer): Buffer | null {
    if (query.length < 12 || query.readUInt16BE(2) & 0x8000) return null;
    this.stats.byRcode.SERVFAIL = (this.stats.byRcode.SERVFAIL ?? 0) + 1;
    return dnsPacket.encode({ type: "response", id: query.readUInt16BE(0), flags: (query.readUInt16BE(2) & 0x7900) | RCODE.SERVFAIL, questions: [] });
  }

  private onDatagram(udp: Socket, msg: Buffer, rinfo: RemoteInfo): void {
    if (rinfo.port === 0) return;
    if (this.limiter && !this.limiter.take(rinfo.address, this.now())) {
      this.stats.rateLimited++;
      // Every second limited query gets an empty truncated reply (no bigger than the query), so a
      // real client behind a busy address retries over TCP, which cannot be spoofed; the rest are
      // dropped (BIND's response-rate-limiting "slip").
      if (++this.limitedSlip % 2 === 0 && msg.length >= 12 && !(msg.readUInt16BE(2) & 0x8000)) {
        const tc = dnsPacket.encode({ type: "response", id: msg.readUInt16BE(0), flags: (msg.readUInt16BE(2) & 0x7900) | dnsPacket.TRUNCATED_RESPONSE, questions: [] });
        udp.send(tc, rinfo.port, rinfo.address);
      }
      return;
    }
    const out = this.answer(msg, "udp");
    if (out) udp.send(out, rinfo.port, rinfo.address, (err) => err && this.stats.errors++);
  }

  private onTcp(s: TcpSocket): void {
    this.stats.tcpConnections++;
    this.sockets.add(s);
    s.setTimeout(this.opts.tcpIdleMs, () => s.destroy());
    s.on("close", () => this.sockets.delete(s));
    s.on("error", () => s.destroy());
    let buf: Buffer = Buffer.alloc(0);
    s.on("data", (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (buf.length > MAX_TCP_BUFFER * 2) return void s.destroy(); // not reading our answers
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) break;
        const query = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        const out = this.answer(Buffer.from(query), "tcp");
        if (!out) continue;
        const frame = Buffer.alloc(2 + out.length);
        frame.writeUInt16BE(out.length, 0);
        out.copy(frame, 2);
        s.write(frame);
        // A client that asks but never reads would grow our buffer without bound.
        if (s.writableLength > MAX_UNREAD_BYTES) return void s.destroy();
      }
    });
  }

  async close(): Promise<void> {
    const udp = this.udp;
    const tcp = this.tcp;
    this.udp = null;
    this.tcp = null;
    for (const s of this.sockets) s.destroy();
    await Promise.all([
      udp ? new Promise<void>((r) => udp.close(() => r())) : undefined,
      tcp ? new Promise<void>((r) => tcp.close(() => r())) : undefined,
    ]);
  }
}
