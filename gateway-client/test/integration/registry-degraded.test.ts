// A partition seen from both sides, with everything real: nats-server, the registry (in-process),
// simulated agents (raw NATS publishes of real agent messages), a gateway client and node:http
// upstreams. Most hosts fall silent → the registry degrades (nothing expires) and says so in its
// presence → the gateway flags it and, in panic mode, keeps routing to every instance; the registry
// stops → the gateway is stale but still serves; hosts and a registry come back → degraded clears
// and panic ends.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { NatsServer, waitFor } from "roster-testkit";
import { build, parseConfig, type Registry } from "roster-registry";
import {
  HeartbeatMessage,
  RegisterMessage,
  ResyncMessage,
  agentSubject,
  decode,
  encode,
  instanceDigest,
  type InstanceRegistration,
} from "roster-schemas";
import { createGateway, type Gateway } from "../../src/index.js";
import { Upstream, registration, silent } from "./helpers.js";

const HB = 200;
const HOSTS = 10;
const SILENCED = 7; // h0..h6: 70 % > the 30 % threshold
const DEAD = 2; // h0, h1: their upstreams are really gone; h2..h6 only lost their agent link

/** Simulated agents over one connection: a heartbeat per beating host every HB, registers on resync. */
class SimHosts {
  readonly epoch = Date.now();
  readonly seq = new Map<string, number>();
  readonly beating = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  constructor(
    readonly nc: NatsConnection,
    readonly instances: Map<string, InstanceRegistration[]>,
  ) {
    nc.subscribe("roster.v1.registry.resync.*", {
      callback: (_err, m) => {
        const r = decode(ResyncMessage, m.data);
        if (r.ok && this.beating.has(r.value.hostId)) this.register(r.value.hostId);
      },
    });
  }

  private env(hostId: string) {
    const seq = (this.seq.get(hostId) ?? 0) + 1;
    this.seq.set(hostId, seq);
    return { v: 1 as const, hostId, epoch: this.epoch, seq, sentAt: Date.now() };
  }

  register(hostId: string): void {
    const instances = this.instances.get(hostId)!;
    this.nc.publish(agentSubject(hostId, "register"), encode(RegisterMessage, { ...this.env(hostId), kind: "register", heartbeatIntervalMs: HB, instances }));
  }

  start(): void {
    for (const h of this.instances.keys()) {
      this.beating.add(h);
      this.register(h);
    }
    this.timer = setInterval(() => {
      for (const h of this.beating) {
        const instances = this.instances.get(h)!;
        this.nc.publish(
          agentSubject(h, "heartbeat"),
          encode(HeartbeatMessage, { ...this.env(h), kind: "heartbeat", heartbeatIntervalMs: HB, instanceCount: instances.length, digest: instanceDigest(instances) }),
        );
      }
    }, HB);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}

async function startRegistry(natsUrl: string): Promise<Registry> {
  const r = build(
    parseConfig({
      nats: { url: natsUrl, reconnectWait: 100 },
      http: { listen: "127.0.0.1:0" },
      presenceInterval: "200ms",
      tickInterval: "50ms",
      // Short, so that without self-preservation the silent hosts would be long gone.
      deregisterAfter: "1s",
      selfPreservation: { threshold: 0.3, minHosts: 3, window: "15s" },
    }),
    { logger: silent },
  );
  await r.start();
  await r.whenReady();
  return r;
}

describe("registry degraded mode seen by a gateway (real nats-server, registry, upstreams)", () => {
  let nats: NatsServer;
  let registry: Registry | null = null;
  let nc: NatsConnection;
  let sim: SimHosts;
  let gw: Gateway;
  const ups: Upstream[] = [];
  before(async () => {
    nats = await NatsServer.start();
    registry = await startRegistry(nats.url);
    nc = await connect({ servers: nats.url });
    for (let i = 0; i < HOSTS; i++) ups.push(await Upstream.start(`h${i}`));
    sim = new SimHosts(nc, new Map(ups.map((u, i) => [`h${i}`, [registration("orders", u.name, u.port)]])));
    sim.start();
    gw = await createGateway({
      nats: nats.url,
      services: ["orders"],
      logger: silent,
      // Enough tries to always get past the dead instances (a retry never repeats an instance).
      maxRetries: DEAD,
      retryBudget: { ratio: 1, minPerSecond: 1000 },
    });
  });
  after(async () => {
    sim?.stop();
    await gw?.close();
    await nc?.close().catch(() => {});
    await registry?.close();
    for (const u of ups) await u.close();
    await nats?.close();
  });

  /** `n` requests, each must succeed; returns the hits per upstream. */
  async function traffic(n: number): Promise<Map<string, number>> {
    const by = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const res = await gw.request("orders", { path: `/r/${i}` });
      const body = (await res.body.json()) as { upstream: string };
      assert.equal(res.statusCode, 200);
      by.set(body.upstream, (by.get(body.upstream) ?? 0) + 1);
    }
    return by;
  }

  test("degraded - silence → registry degraded, nothing expires, gateway panics and serves; registry gone → stale but serving; all back → clear", async () => {
    await waitFor(() => gw.instances("orders").filter((i) => i.status === "passing").length === HOSTS, { timeoutMs: 5000, what: "10 passing instances" });
    const events: string[] = [];
    gw.on("degraded", (on: boolean) => events.push(`degraded:${on}`));
    gw.on("panic", (_s: string, on: boolean) => events.push(`panic:${on}`));
    gw.on("stale", (on: boolean) => events.push(`stale:${on}`));
    // P2C spreads by latency, not evenly: enough requests that every instance is picked (30 missed
    // one in a full-suite run).
    const before = await traffic(200);
    assert.equal(before.size, HOSTS, "healthy: every instance serves");

    // The partition: 7 agents fall silent; 2 of their services die too, 5 are fine.
    for (let i = 0; i < SILENCED; i++) sim.beating.delete(`h${i}`);
    for (let i = 0; i < DEAD; i++) await ups[i]!.kill();
    const reg = registry!;
    await waitFor(() => reg.status().degraded === true, { timeoutMs: 5000, what: "registry degraded" });
    const status = await (await fetch(`${reg.url}/v1/status`)).json() as Record<string, unknown>;
    assert.equal(status.degraded, true);
    assert.equal(status.degradedReason, "mass-silence");
    assert.equal(typeof status.degradedSince, "number");
    const list = await fetch(`${reg.url}/v1/services/orders/instances`);
    assert.equal(list.headers.get("x-roster-degraded"), "1");
    await list.body?.cancel();
    await waitFor(() => gw.degraded, { timeoutMs: 5000, what: "gateway sees degraded" });
    assert.equal(gw.degradedInfo?.reason, "mass-silence");
    await waitFor(() => gw.instances("orders").filter((i) => i.reason === "agent-lost").length === SILENCED, { timeoutMs: 5000, what: "agent-lost seen" });
    await sleep(1500); // past deregisterAfter (1 s): without self-preservation 7 instances would be gone
    assert.equal(reg.memory.service("orders").instances.length, HOSTS, "nothing expired");
    assert.equal(gw.instances("orders").length, HOSTS);

    const during = await traffic(60);
    assert.equal(gw.stats("orders")!.panic, true, "3 of 10 usable < panic threshold 0.5");
    const silencedButAlive = [...during.keys()].filter((u) => Number(u.slice(1)) >= DEAD && Number(u.slice(1)) < SILENCED);
    assert.ok(silencedButAlive.length >= 3, `panic routes to agent-lost instances that are alive: ${[...during.keys()].join(",")}`);
    assert.ok(![...during.keys()].some((u) => Number(u.slice(1)) < DEAD), "no answer from a dead instance, obviously");

    // The registry is cut off: the gateway goes stale but keeps serving its last known catalog.
    await registry!.close();
    registry = null;
    await waitFor(() => gw.isStale, { timeoutMs: 5000, what: "gateway stale" });
    assert.equal(gw.staleReason, "presence-lost");
    assert.equal((await traffic(30)).size > 0, true);

    // Hosts come back, then a registry: it loads the catalog, asks every host for its registration.
    for (let i = 0; i < SILENCED; i++) sim.beating.add(`h${i}`);
    for (let i = 0; i < DEAD; i++) ups[i] = await Upstream.start(`h${i}`, undefined);
    // The restarted upstreams have new ports: the hosts re-register them.
    for (let i = 0; i < DEAD; i++) sim.instances.set(`h${i}`, [registration("orders", `h${i}`, ups[i]!.port)]);
    registry = await startRegistry(nats.url);
    await waitFor(() => !gw.isStale && !gw.degraded, { timeoutMs: 10_000, what: "gateway fresh and not degraded" });
    await waitFor(() => gw.instances("orders").filter((i) => i.status === "passing").length === HOSTS, { timeoutMs: 10_000, what: "all passing again" });
    // As before the partition: P2C spreads by latency, so 60 requests once missed a healthy instance.
    const afterAll = await traffic(200);
    assert.equal(gw.stats("orders")!.panic, false, "panic ended");
    // (the two restarted instances may still sit out an outlier ejection earned while dead)
    assert.ok(afterAll.size >= HOSTS - DEAD, [...afterAll.keys()].join(","));
    assert.equal(registry.status().degraded, false);
    // The order of what the gateway announced.
    const firstOf = (e: string) => events.indexOf(e);
    assert.ok(firstOf("degraded:true") >= 0 && firstOf("panic:true") >= 0 && firstOf("stale:true") >= 0, events.join(" "));
    assert.ok(firstOf("degraded:false") > firstOf("degraded:true"), events.join(" "));
    assert.ok(firstOf("panic:false") > firstOf("panic:true"), events.join(" "));
    assert.ok(firstOf("stale:false") > firstOf("stale:true"), events.join(" "));
  });
});
