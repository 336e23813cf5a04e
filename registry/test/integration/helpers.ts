import { connect, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import {
  CatalogDelta,
  DeregisterMessage,
  HealthMessage,
  HeartbeatMessage,
  RegisterMessage,
  agentSubject,
  catalogSubject,
  decode,
  encode,
  instanceDigest,
  resyncSubject,
  type InstanceRegistration,
  type InstanceStatus,
} from "roster-schemas";
import { pino } from "pino";
import { build, type Registry } from "../../src/app.js";
import { parseConfig, type RegistryConfigInput } from "../../src/config.js";

export const silent = pino({ level: process.env.ROSTER_TEST_VERBOSE ? "debug" : "silent" });

export async function startRegistry(natsUrl: string, over: Partial<RegistryConfigInput> = {}): Promise<Registry> {
  const config = parseConfig({
    nats: { url: natsUrl, reconnectWait: 100 },
    http: { listen: "127.0.0.1:0" },
    presenceInterval: "200ms",
    tickInterval: "50ms",
    ...over,
  });
  const r = build(config, { logger: silent });
  await r.start();
  await r.whenReady();
  return r;
}

export function inst(id: string, over: Partial<InstanceRegistration> = {}): InstanceRegistration {
  return { id, service: "orders", address: "127.0.0.1", port: 8080, tags: [], meta: {}, weight: 100, status: "passing", checks: [], ...over };
}

/** A tiny agent that speaks the real wire protocol over a real NATS connection. */
export class FakeAgent {
  seq = 0;
  instances: InstanceRegistration[] = [];
  constructor(
    readonly nc: NatsConnection,
    readonly hostId: string,
    public epoch = 1,
    readonly heartbeatIntervalMs = 200,
  ) {}

  static async connect(url: string, hostId: string, epoch = 1, heartbeatIntervalMs = 200): Promise<FakeAgent> {
    return new FakeAgent(await connect({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 100 }), hostId, epoch, heartbeatIntervalMs);
  }

  private env() {
    return { v: 1 as const, hostId: this.hostId, epoch: this.epoch, seq: ++this.seq, sentAt: Date.now() };
  }

  async register(instances: InstanceRegistration[] = this.instances): Promise<void> {
    this.instances = instances;
    this.nc.publish(agentSubject(this.hostId, "register"), encode(RegisterMessage, { ...this.env(), kind: "register", heartbeatIntervalMs: this.heartbeatIntervalMs, instances }));
    await this.nc.flush();
  }

  digest(): string {
    return instanceDigest(this.instances.map((i) => ({ service: i.service, id: i.id, status: i.status, address: i.address, port: i.port })));
  }

  async heartbeat(): Promise<void> {
    this.nc.publish(
      agentSubject(this.hostId, "heartbeat"),
      encode(HeartbeatMessage, { ...this.env(), kind: "heartbeat", heartbeatIntervalMs: this.heartbeatIntervalMs, instanceCount: this.instances.length, digest: this.digest() }),
    );
    await this.nc.flush();
  }

  async health(id: string, status: "passing" | "warning" | "critical", service = "orders"): Promise<void> {
    this.instances = this.instances.map((i) => (i.id === id && i.service === service ? { ...i, status: status as InstanceStatus } : i));
    this.nc.publish(
      agentSubject(this.hostId, "health"),
      encode(HealthMessage, { ...this.env(), kind: "health", service, instanceId: id, check: { id: "http-0", type: "http", status, since: Date.now() }, instanceStatus: status }),
    );
    await this.nc.flush();
  }

  async deregister(ids: string[], service = "orders"): Promise<void> {
    this.instances = this.instances.filter((i) => !(i.service === service && ids.includes(i.id)));
    this.nc.publish(agentSubject(this.hostId, "deregister"), encode(DeregisterMessage, { ...this.env(), kind: "deregister", reason: "api", instances: ids.map((instanceId) => ({ service, instanceId })) }));
    await this.nc.flush();
  }

  /**
   * Answers the registry's resync requests by registering the host's full set again, as the real
   * agent does (the anti-entropy that heals a register lost or dropped: one read by a registry
   * before it became the writer, one published while its node was down). Unsubscribe to stop.
   */
  answerResyncs(counter: { resyncs: number } = { resyncs: 0 }): Subscription {
    return this.nc.subscribe(resyncSubject(this.hostId), {
      callback: () => {
        counter.resyncs++;
        void this.register().catch(() => undefined);
      },
    });
  }

  /** Heartbeats every interval until stopped. */
  beat(): () => void {
    const t = setInterval(() => void this.heartbeat().catch(() => undefined), this.heartbeatIntervalMs);
    return () => clearInterval(t);
  }

  async close(): Promise<void> {
    await this.nc.close();
  }
}

/** Collects the deltas published on a service's catalog subject. */
export function collectDeltas(nc: NatsConnection, service: string): { deltas: CatalogDelta[]; sub: Subscription } {
  const deltas: CatalogDelta[] = [];
  const sub = nc.subscribe(catalogSubject(service), {
    callback: (_err, m) => {
      const r = decode(CatalogDelta, m.data);
      if (r.ok) deltas.push(r.value);
    },
  });
  return { deltas, sub };
}

export async function getJson(url: string, init?: RequestInit): Promise<{ status: number; headers: Headers; body: unknown }> {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as unknown) : undefined };
}

export type Inst = { id: string; status: string; reason?: string; host: string; port: number };
