import { after, before } from "node:test";
import { NatsServer } from "roster-testkit";
// Test-side helpers: a small catalog publisher speaking the real wire (used where the real
// registry would get in the way, e.g. to inject gaps and bad messages), and node:http
// upstreams with injectable faults.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { connect, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { pino } from "pino";
import { build, parseConfig, type Registry } from "roster-registry";
import { HeartbeatMessage, RegisterMessage, HealthMessage, agentSubject, instanceDigest, type InstanceRegistration } from "roster-schemas";
import {
  CatalogDelta,
  PRESENCE_SUBJECT,
  PresenceMessage,
  REGISTRY_QUEUE,
  SNAPSHOT_WILDCARD,
  Snapshot,
  SnapshotBusy,
  catalogSubject,
  encode,
  type CatalogInstance,
} from "roster-schemas";

export function makeInstance(service: string, id: string, port: number, extra: Partial<CatalogInstance> = {}): CatalogInstance {
  const now = Date.now();
  return {
    id,
    service,
    host: "h1",
    address: "127.0.0.1",
    port,
    tags: [],
    meta: {},
    weight: 100,
    status: "passing",
    checks: [],
    epoch: 1,
    registeredAt: now,
    updatedAt: now,
    ...extra,
  };
}

/** Answers snapshot requests and publishes deltas + presence, like the registry does. */
export class FakeRegistry {
  readonly nc: NatsConnection;
  private rev = 0;
  readonly catalog = new Map<string, { rev: number; instances: Map<string, CatalogInstance> }>();
  private snapSub: Subscription;
  private presenceTimer: ReturnType<typeof setInterval> | null = null;
  snapshotRequests = 0;
  /** When false, snapshot requests are not answered (they time out). */
  answerSnapshots = true;
  /** The next this-many snapshot requests are answered `snapshot-busy` (a registry shedding bulk work). */
  busyAnswers = 0;
  busyRetryAfterMs = 100;

  private constructor(nc: NatsConnection, readonly presenceIntervalMs: number) {
    this.nc = nc;
    this.snapSub = nc.subscribe(SNAPSHOT_WILDCARD, {
      queue: REGISTRY_QUEUE,
      callback: (err, msg) => {
        if (err) return;
        this.snapshotRequests++;
        if (!this.answerSnapshots) return;
        const service = msg.subject.split(".").pop()!;
        if (this.busyAnswers > 0) {
          this.busyAnswers--;
          msg.respond(encode(SnapshotBusy, { v: 1, kind: "snapshot-busy", service, retryAfterMs: this.busyRetryAfterMs }));
          return;
        }
        const s = this.catalog.get(service);
        msg.respond(
          encode(Snapshot, {
            v: 1,
            kind: "snapshot",
            service,
            revision: s?.rev ?? 0,
            known: s !== undefined,
            instances: s ? [...s.instances.values()] : [],
          }),
        );
      },
    });
  }

  static async start(url: string, presenceIntervalMs = 200): Promise<FakeRegistry> {
    const nc = await connect({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    const r = new FakeRegistry(nc, presenceIntervalMs);
    r.startPresence();
    await nc.flush();
    return r;
  }

  startPresence(): void {
    if (this.presenceTimer) return;
    const beat = (): void => {
      try {
        this.nc.publish(
          PRESENCE_SUBJECT,
          encode(PresenceMessage, { v: 1, kind: "presence", registryId: "fake", epoch: 1, sentAt: Date.now(), revision: this.rev, intervalMs: this.presenceIntervalMs }),
        );
      } catch {
        // closed
      }
    };
    beat();
    this.presenceTimer = setInterval(beat, this.presenceIntervalMs);
  }

  stopPresence(): void {
    if (this.presenceTimer) clearInterval(this.presenceTimer);
    this.presenceTimer = null;
  }

  private svc(service: string) {
    let s = this.catalog.get(service);
    if (!s) {
      s = { rev: 0, instances: new Map() };
      this.catalog.set(service, s);
    }
    return s;
  }

  /** Puts an instance and publishes its delta; returns the delta's revision. */
  put(inst: CatalogInstance, opts: { prevRevision?: number; publish?: boolean } = {}): number {
    const s = this.svc(inst.service);
    const revision = ++this.rev;
    const prevRevision = opts.prevRevision ?? s.rev;
    s.instances.set(inst.id, inst);
    s.rev = revision;
    if (opts.publish !== false) {
      this.nc.publish(
        catalogSubject(inst.service),
        encode(CatalogDelta, { v: 1, kind: "delta", op: "put", service: inst.service, instanceId: inst.id, revision, prevRevision, instance: inst }),
      );
    }
    return revision;
  }

  remove(service: string, id: string, opts: { publish?: boolean } = {}): number {
    const s = this.svc(service);
    const revision = ++this.rev;
    const prevRevision = s.rev;
    s.instances.delete(id);
    s.rev = revision;
    if (opts.publish !== false) {
      this.nc.publish(catalogSubject(service), encode(CatalogDelta, { v: 1, kind: "delta", op: "delete", service, instanceId: id, revision, prevRevision }));
    }
    return revision;
  }

  publishRaw(subject: string, data: string | Uint8Array): void {
    this.nc.publish(subject, typeof data === "string" ? new TextEncoder().encode(data) : data);
  }

  async close(): Promise<void> {
    this.stopPresence();
    this.snapSub.unsubscribe();
    await this.nc.close().catch(() => {});
  }
}

export type Fault = "ok" | "hang" | "reset" | "5xx" | "slow";

/** A real node:http upstream on port 0 with a switchable fault. */
export class Upstream {
  readonly server: Server;
  readonly sockets = new Set<Socket>();
  fault: Fault = "ok";
  slowMs = 200;
  statusCode = 503;
  hits = 0;
  readonly name: string;
  lastHeaders: IncomingMessage["headers"] = {};

  private constructor(name: string, handler?: (req: IncomingMessage, res: ServerResponse) => void) {
    this.name = name;
    this.server = createServer((req, res) => {
      this.hits++;
      this.lastHeaders = req.headers;
      if (handler) return handler(req, res);
      this.serve(req, res);
    });
    this.server.keepAliveTimeout = 60_000;
    this.server.on("connection", (s) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    });
  }

  static async start(name: string, handler?: (req: IncomingMessage, res: ServerResponse) => void): Promise<Upstream> {
    const u = new Upstream(name, handler);
    await new Promise<void>((resolve) => u.server.listen(0, "127.0.0.1", resolve));
    return u;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  private serve(req: IncomingMessage, res: ServerResponse): void {
    req.resume();
    const send = (): void => {
      res.setHeader("x-upstream", this.name);
      res.end(JSON.stringify({ upstream: this.name, path: req.url }));
    };
    switch (this.fault) {
      case "ok":
        return send();
      case "hang":
        return; // never answers
      case "reset":
        req.socket.destroy();
        return;
      case "5xx":
        res.statusCode = this.statusCode;
        res.end(`fault ${this.statusCode} from ${this.name}`);
        return;
      case "slow":
        setTimeout(send, this.slowMs);
        return;
    }
  }

  /** Kills the instance: stops listening (refused from now on) and destroys open connections. */
  async kill(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    this.server.closeAllConnections?.();
    await closed;
  }

  async close(): Promise<void> {
    if (!this.server.listening) return;
    await this.kill();
  }
}

// ---------------------------------------------------------------------------------------
// The real registry (in-process) and a fake agent speaking the real wire protocol.


export const silent = pino({ level: process.env.ROSTER_TEST_VERBOSE ? "debug" : "silent" });

export async function startRegistry(natsUrl: string): Promise<Registry> {
  const config = parseConfig({
    nats: { url: natsUrl, reconnectWait: 100 },
    http: { listen: "127.0.0.1:0" },
    presenceInterval: "200ms",
    tickInterval: "50ms",
  });
  const r = build(config, { logger: silent });
  await r.start();
  await r.whenReady();
  return r;
}

export function registration(service: string, id: string, port: number, over: Partial<InstanceRegistration> = {}): InstanceRegistration {
  return { id, service, address: "127.0.0.1", port, tags: [], meta: {}, weight: 100, status: "passing", checks: [], ...over };
}

export class FakeAgent {
  private seq = 0;
  instances: InstanceRegistration[] = [];
  private timer: ReturnType<typeof setInterval> | null = null;
  private constructor(
    readonly nc: NatsConnection,
    readonly hostId: string,
    readonly heartbeatIntervalMs: number,
  ) {}

  static async connect(url: string, hostId: string, heartbeatIntervalMs = 200): Promise<FakeAgent> {
    const nc = await connect({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    return new FakeAgent(nc, hostId, heartbeatIntervalMs);
  }

  private env() {
    return { v: 1 as const, hostId: this.hostId, epoch: 1, seq: ++this.seq, sentAt: Date.now() };
  }

  async register(instances: InstanceRegistration[] = this.instances): Promise<void> {
    this.instances = instances;
    this.nc.publish(agentSubject(this.hostId, "register"), encode(RegisterMessage, { ...this.env(), kind: "register", heartbeatIntervalMs: this.heartbeatIntervalMs, instances }));
    await this.flush();
    this.startBeat();
  }

  async health(service: string, id: string, status: "passing" | "warning" | "critical"): Promise<void> {
    this.instances = this.instances.map((i) => (i.id === id && i.service === service ? { ...i, status } : i));
    this.nc.publish(
      agentSubject(this.hostId, "health"),
      encode(HealthMessage, { ...this.env(), kind: "health", service, instanceId: id, check: { id: "http-0", type: "http", status, since: Date.now() }, instanceStatus: status }),
    );
    await this.flush();
  }

  /**
   * After a nats-server restart this connection may still be reconnecting: the publish is buffered
   * by the client, but a flush (a PING) is refused with "connection disconnected". Retry it.
   */
  private async flush(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.nc.flush();
        return;
      } catch (err) {
        if (attempt >= 50) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  private startBeat(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      try {
        const digest = instanceDigest(this.instances.map((i) => ({ service: i.service, id: i.id, status: i.status, address: i.address, port: i.port })));
        this.nc.publish(
          agentSubject(this.hostId, "heartbeat"),
          encode(HeartbeatMessage, { ...this.env(), kind: "heartbeat", heartbeatIntervalMs: this.heartbeatIntervalMs, instanceCount: this.instances.length, digest }),
        );
      } catch {
        // closed
      }
    }, this.heartbeatIntervalMs);
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.nc.close().catch(() => {});
  }
}

/**
 * Per-file fixture shared by the request-path tests: a core-only nats-server, a FakeRegistry on it,
 * and cleanups run in reverse order after the file. Read its fields inside tests (they are set in
 * `before`).
 */
export function fakeRegistryFixture(): { nats: NatsServer; reg: FakeRegistry; cleanups: Array<() => Promise<void>> } {
  const fx = { cleanups: [] as Array<() => Promise<void>> } as { nats: NatsServer; reg: FakeRegistry; cleanups: Array<() => Promise<void>> };
  before(async () => {
    fx.nats = await NatsServer.start({ jetstream: false });
    fx.reg = await FakeRegistry.start(fx.nats.url);
  });
  after(async () => {
    for (const c of fx.cleanups.reverse()) await c().catch(() => {});
    await fx.reg.close();
    await fx.nats.close();
  });
  return fx;
}
