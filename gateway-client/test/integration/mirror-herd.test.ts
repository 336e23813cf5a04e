// Snapshot herds (docs/BENCHMARKS.md, Findings): a page that times out is asked again on its own
// (not the whole snapshot from page 0), the per-page timeout grows, the registry skips requests
// whose requester stopped waiting, and a mirror keeps at most N page requests in flight.
// Real nats-server, real registry; the registry's NATS connection goes through a TCP proxy that
// holds the first request for page 1 (and what follows it) for a while: a registry that is slow
// exactly when the mirror asks for page 1.
import assert from "node:assert/strict";
import { createServer, connect as tcpConnect, type Server, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { NatsServer, waitFor } from "roster-testkit";
import type { Registry } from "roster-registry";
import { SNAPSHOT_WILDCARD } from "roster-schemas";
import { CatalogMirror } from "../../src/adapters/mirror.js";
import { FakeAgent, FakeRegistry, registration, silent, startRegistry } from "./helpers.js";

const PAGE1 = '"kind":"snapshot-request","page":1,';

/** TCP proxy to nats-server; server → client bytes are held `holdMs` from the first chunk with `needle` on (once armed). */
class HoldingProxy {
  armed = false;
  private held = false;
  private holdUntil = 0;
  private readonly sockets = new Set<Socket>();
  private server: Server | null = null;
  url = "";

  static async start(target: URL, needle: string, holdMs: number): Promise<HoldingProxy> {
    const proxy = new HoldingProxy();
    const server = createServer((client) => proxy.pipe(client, target, needle, holdMs));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    proxy.server = server;
    proxy.url = `nats://127.0.0.1:${(server.address() as { port: number }).port}`;
    return proxy;
  }

  private pipe(client: Socket, target: URL, needle: string, holdMs: number): void {
    const upstream = tcpConnect(Number(target.port), target.hostname);
    this.sockets.add(client).add(upstream);
    client.pipe(upstream);
    let tail = "";
    // Order matters: once holding, every later chunk waits until the same instant.
    let chain = Promise.resolve();
    upstream.on("data", (chunk: Buffer) => {
      const text = tail + chunk.toString("latin1");
      tail = text.slice(-needle.length);
      if (this.armed && !this.held && text.includes(needle)) {
        this.held = true;
        this.holdUntil = Date.now() + holdMs;
      }
      chain = chain
        .then(() => {
          const wait = this.holdUntil - Date.now(); // an instant, not a delay per chunk
          return wait > 0 ? new Promise((r) => setTimeout(r, wait)) : undefined;
        })
        .then(() => void client.write(chunk));
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  }

  get triggered(): boolean {
    return this.held;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server?.close(r));
  }
}

describe("mirror herd", () => {
  let nats: NatsServer;
  let proxy: HoldingProxy;
  let registry: Registry;
  let observer: NatsConnection;
  const agents: FakeAgent[] = [];
  /** page → snapshot requests seen on the wire (a plain subscriber gets a copy of each). */
  const requestsByPage = new Map<number, number>();
  const TOTAL = 900;
  const HOSTS = 6;

  before(async () => {
    nats = await NatsServer.start();
    proxy = await HoldingProxy.start(new URL(nats.url), PAGE1, 2000);
    registry = await startRegistry(proxy.url);
    observer = await connect({ servers: nats.url });
    observer.subscribe(`${SNAPSHOT_WILDCARD.slice(0, -1)}big`, {
      callback: (_err, m) => {
        const page = m.data.length === 0 ? 0 : (JSON.parse(new TextDecoder().decode(m.data)) as { page: number }).page;
        requestsByPage.set(page, (requestsByPage.get(page) ?? 0) + 1);
      },
    });
    for (let h = 0; h < HOSTS; h++) {
      const agent = await FakeAgent.connect(nats.url, `herd-host-${h}`, 1000);
      agents.push(agent);
      await agent.register(Array.from({ length: TOTAL / HOSTS }, (_, i) => registration("big", `b-${h}-${i}`, 10_000 + i, { meta: { blob: "m".repeat(500), more: "n".repeat(300) } })));
    }
    await waitFor(
      async () => {
        const res = await fetch(`${registry.url}/v1/services/big/instances`);
        return res.ok && ((await res.json()) as unknown[]).length === TOTAL;
      },
      { timeoutMs: 10_000, what: `${TOTAL} instances in the registry` },
    );
  });
  after(async () => {
    for (const a of agents) await a.close();
    await observer?.close();
    await registry?.close();
    await proxy?.close();
    await nats?.close();
  });

  test("mirror herd - a page that times out is retried alone, with a longer timeout, and the registry skips the expired requests", { timeout: 15_000 }, async () => {
    const nc = await connect({ servers: nats.url });
    const mirror = new CatalogMirror({ services: ["big"], presenceIntervalMs: 200, snapshotRequestTimeoutMs: 300, logger: silent });
    const expiredBefore = await expiredDrops(registry.url);
    try {
      proxy.armed = true;
      mirror.attach(nc);
      await waitFor(() => mirror.view("big")?.instances.length === TOTAL, { timeoutMs: 10_000, what: "the whole service in the mirror" }).catch(async (err: Error) => {
        const st = (await (await fetch(`${registry.url}/v1/status`)).json()) as { drops: unknown; snapshotsServed: number };
        throw new Error(`${err.message}: ${JSON.stringify({ st, stats: mirror.stats, requestsByPage: [...requestsByPage], timeoutMs: mirror.snapshotRequestTimeoutMs, held: proxy.triggered })}`);
      });
      assert.ok(proxy.triggered, "the proxy held page 1");
      const pages = mirror.stats.snapshotPages;
      assert.ok(pages >= 3, `pages: ${pages}`);
      assert.ok(mirror.stats.snapshotFailures >= 1, "page 1 timed out at least once");
      assert.equal(requestsByPage.get(0), 1, "page 0 asked once: no restart from the first page");
      assert.equal(mirror.stats.snapshotRestarts, 0);
      // 300 → 600 → 1200 ms: within the 2 s hold at most 3 tries of page 1, then one per page.
      assert.ok(mirror.stats.snapshotRequests <= pages + 3, `requests ${mirror.stats.snapshotRequests} for ${pages} pages`);
      assert.ok(mirror.snapshotRequestTimeoutMs > 300, `timeout grew: ${mirror.snapshotRequestTimeoutMs}`);
      assert.equal(new Set(mirror.view("big")!.instances.map((i) => i.id)).size, TOTAL);
      // The requests that waited in the held stream past their deadline were not answered.
      await waitFor(async () => (await expiredDrops(registry.url)) > expiredBefore, { timeoutMs: 3000, what: "the registry skipping an expired request" });
    } finally {
      proxy.armed = false;
      await mirror.close();
      await nc.close();
    }
  });
  test("mirror herd - a client whose clock is a minute behind still syncs: after 3 skipped requests it asks without a deadline", { timeout: 15_000 }, async () => {
    const nc = await connect({ servers: nats.url });
    const mirror = new CatalogMirror({ services: ["big"], presenceIntervalMs: 200, snapshotRequestTimeoutMs: 100, logger: silent, now: () => Date.now() - 60_000 });
    const expiredBefore = await expiredDrops(registry.url);
    try {
      mirror.attach(nc);
      await waitFor(() => mirror.view("big")?.instances.length === TOTAL, { timeoutMs: 10_000, what: "the whole service in a skewed mirror" });
      // Its first requests were skipped as expired by the registry (their deadline a minute old).
      assert.ok((await expiredDrops(registry.url)) - expiredBefore >= 3, "the registry skipped the skewed requests");
      assert.ok(mirror.stats.snapshotFailures >= 3);
    } finally {
      await mirror.close();
      await nc.close();
    }
  });
});

describe("mirror herd - in-flight cap", () => {
  let nats: NatsServer;
  let reg: FakeRegistry;
  before(async () => {
    nats = await NatsServer.start({ jetstream: false });
    reg = await FakeRegistry.start(nats.url);
  });
  after(async () => {
    await reg?.close();
    await nats?.close();
  });

  test("mirror herd - 12 services against a registry that does not answer: at most 2 page requests in flight, timeouts growing", { timeout: 15_000 }, async () => {
    reg.answerSnapshots = false;
    const services = Array.from({ length: 12 }, (_, i) => `quiet-${i}`);
    const nc = await connect({ servers: nats.url });
    const mirror = new CatalogMirror({ services, presenceIntervalMs: 200, snapshotRequestTimeoutMs: 200, maxSnapshotRequestsInFlight: 2, logger: silent });
    try {
      const before = reg.snapshotRequests;
      mirror.attach(nc);
      await new Promise((r) => setTimeout(r, 1500));
      const asked = reg.snapshotRequests - before;
      // 2 slots with timeouts 200, 400, 800 ms: about 6 requests in 1.5 s; without the cap and the
      // growing timeout, 12 services × 7 tries.
      assert.ok(asked >= 2 && asked <= 8, `requests in 1.5 s: ${asked}`);
      assert.ok(mirror.snapshotRequestTimeoutMs >= 800, `timeout ${mirror.snapshotRequestTimeoutMs}`);
      // And they converge once the registry answers.
      reg.answerSnapshots = true;
      await waitFor(() => services.every((s) => mirror.view(s) !== undefined), { timeoutMs: 10_000, what: "every service synced" });
    } finally {
      await mirror.close();
      await nc.close();
    }
  });
});

async function expiredDrops(url: string): Promise<number> {
  const res = await fetch(`${url}/v1/status`);
  const body = (await res.json()) as { drops?: { byReason?: Record<string, number> } };
  return body.drops?.byReason?.["expired"] ?? 0;
}
