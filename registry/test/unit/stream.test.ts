import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { CatalogInstance } from "roster-schemas";
import { pino } from "pino";
import { CatalogMemory } from "../../src/adapters/catalog-memory.js";
import { buildHttp, type StatusBody } from "../../src/adapters/http.js";

const silent = pino({ level: "silent" });
const rec = (service: string, id: string, over: Partial<CatalogInstance> = {}): CatalogInstance => ({
  id, service, host: "h1", address: "10.0.0.1", port: 8080, tags: [], meta: {}, weight: 100,
  status: "passing", checks: [], epoch: 1, registeredAt: 1, updatedAt: 2, ...over,
});

interface SseEvent { id?: string; event?: string; data?: unknown; comment?: string; retry?: string }

/** A real HTTP client on an event stream: parses frames as they arrive. */
class SseClient {
  readonly events: SseEvent[] = [];
  readonly ctl = new AbortController();
  ended = false;
  status = 0;
  private waiters: Array<() => void> = [];

  static async open(url: string, headers: Record<string, string> = {}): Promise<SseClient> {
    const c = new SseClient();
    const r = await fetch(url, { headers, signal: c.ctl.signal });
    c.status = r.status;
    if (r.status !== 200) {
      c.events.push({ data: await r.json() });
      return c;
    }
    assert.match(r.headers.get("content-type") ?? "", /^text\/event-stream/);
    void c.pump(r.body!);
    return c;
  }

  private async pump(body: ReadableStream<Uint8Array>) {
    const dec = new TextDecoder();
    let buf = "";
    try {
      for await (const chunk of body) {
        buf += dec.decode(chunk, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const e: SseEvent = {};
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) e.comment = line.slice(1).trim();
            else {
              const k = line.slice(0, line.indexOf(":"));
              const v = line.slice(line.indexOf(":") + 1).trimStart();
              if (k === "data") e.data = JSON.parse(v);
              else if (k === "id" || k === "event" || k === "retry") e[k] = v;
            }
          }
          this.events.push(e);
        }
        this.wake();
      }
    } catch {
      // aborted by the test
    }
    this.ended = true;
    this.wake();
  }

  private wake() {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Waits until `pred` holds on the events received so far. */
  async until(pred: (events: SseEvent[]) => boolean, ms = 3000): Promise<SseEvent[]> {
    const deadline = Date.now() + ms;
    while (!pred(this.events)) {
      if (Date.now() > deadline) assert.fail(`timed out; got ${JSON.stringify(this.events)}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
    return this.events;
  }

  typed(): SseEvent[] {
    return this.events.filter((e) => e.event);
  }

  close() {
    this.ctl.abort();
  }
}

async function waitUntil(pred: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) assert.fail(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("HTTP event streams (SSE over a real listener)", () => {
  const memory = new CatalogMemory();
  let loaded = true;
  const status = (): StatusBody => ({
    revision: memory.revision, hosts: 1, lostHosts: 0, instances: 0, services: 0, selfPreservation: false,
    drops: { total: 0, byReason: {}, byKind: {} }, natsConnected: true, catalogLoaded: loaded,
  });
  const app = buildHttp({ catalog: memory, status, ready: () => true, loaded: () => loaded, maxBlockingWaitMs: 1000, logger: silent, stream: { ringSize: 3, heartbeatMs: 100 } });
  let base = "";
  const clients: SseClient[] = [];
  const open = async (path: string, headers?: Record<string, string>) => {
    const c = await SseClient.open(base + path, headers);
    clients.push(c);
    return c;
  };

  before(async () => {
    memory.load("orders", "a", 10, rec("orders", "a", { zone: "z1" }));
    memory.load("billing", "b", 11, rec("billing", "b"));
    base = await app.listen({ host: "127.0.0.1", port: 0 });
  });
  after(async () => {
    for (const c of clients) c.close();
    await app.close();
  });

  it("stream - a service stream starts with a snapshot, then forwards only that service's puts and deletes", async () => {
    const c = await open("/v1/services/orders/stream");
    const [retry, snap] = await c.until((e) => e.length >= 2);
    assert.equal(retry!.retry, "2000");
    assert.equal(snap!.event, "snapshot");
    assert.equal(snap!.id, "10");
    const d = snap!.data as { service: string; revision: number; known: boolean; instances: Array<Record<string, unknown>> };
    assert.equal(d.known, true);
    assert.deepEqual(d.instances.map((i) => [i.id, i.zone]), [["a", "z1"]]);
    assert.equal("epoch" in d.instances[0]!, false, "public fields only");
    memory.apply("billing", "b", 12, rec("billing", "b", { status: "critical" }));
    memory.apply("orders", "a", 13, rec("orders", "a", { zone: "z1", status: "critical" }));
    memory.apply("orders", "a", 14, null);
    const typed = (await c.until(() => c.typed().length >= 3)).filter((e) => e.event);
    assert.deepEqual(typed.map((e) => [e.event, e.id]), [["snapshot", "10"], ["put", "13"], ["delete", "14"]]);
    assert.deepEqual(typed[1]!.data, {
      service: "orders", id: "a", revision: 13, prevRevision: 10,
      instance: { id: "a", service: "orders", host: "h1", address: "10.0.0.1", port: 8080, zone: "z1", tags: [], meta: {}, weight: 100, status: "critical", checks: [], updatedAt: 2 },
    });
    assert.deepEqual(typed[2]!.data, { service: "orders", id: "a", revision: 14, prevRevision: 13 });
  });

  it("stream - Last-Event-ID resumes from the ring; too old or from another catalog gets a snapshot", async () => {
    // orders changed at 13, 14 (the ring holds both; its floor is 10).
    const resumed = await open("/v1/services/orders/stream", { "last-event-id": "10" });
    await resumed.until(() => resumed.typed().length >= 2);
    assert.deepEqual(resumed.typed().map((e) => [e.event, e.id]), [["put", "13"], ["delete", "14"]]);
    const upToDate = await open("/v1/services/orders/stream?lastEventId=14");
    memory.apply("orders", "c", 15, rec("orders", "c"));
    await upToDate.until(() => upToDate.typed().length >= 1);
    assert.deepEqual(upToDate.typed().map((e) => [e.event, e.id]), [["put", "15"]], "nothing replayed, then live");
    memory.apply("orders", "c", 16, rec("orders", "c", { status: "warning" })); // ring of 3: 14, 15, 16 (floor 13)
    const edge = await open("/v1/services/orders/stream", { "last-event-id": "13" });
    await edge.until(() => edge.typed().length >= 3);
    assert.deepEqual(edge.typed().map((e) => e.id), ["14", "15", "16"]);
    for (const from of ["10", "12", "99"]) {
      const c = await open("/v1/services/orders/stream", { "last-event-id": from });
      await c.until(() => c.typed().length >= 1);
      assert.equal(c.typed()[0]!.event, "snapshot", `from ${from}`);
      assert.equal(c.typed()[0]!.id, "16");
    }
    const bad = await open("/v1/services/orders/stream", { "last-event-id": "abc" });
    assert.equal(bad.status, 400);
    assert.equal((bad.events[0]!.data as { code: string }).code, "ROSTER_BAD_REQUEST");
    const badName = await open("/v1/services/a.b/stream");
    assert.equal(badName.status, 400);
  });

  it("stream - /v1/stream carries every service: snapshot, live changes, resume across services", async () => {
    const all = await open("/v1/stream");
    await all.until(() => all.typed().length >= 1);
    const snap = all.typed()[0]!;
    assert.equal(snap.event, "snapshot");
    assert.equal(snap.id, String(memory.revision));
    const d = snap.data as { services: Array<{ name: string; instances: unknown[] }> };
    assert.deepEqual(d.services.map((s) => [s.name, s.instances.length]), [["billing", 1], ["orders", 1]]);
    memory.apply("billing", "b2", 17, rec("billing", "b2"));
    memory.apply("orders", "c", 18, null);
    await all.until(() => all.typed().length >= 3);
    assert.deepEqual(all.typed().slice(1).map((e) => [e.event, e.id]), [["put", "17"], ["delete", "18"]]);
    const resumed = await open("/v1/stream", { "last-event-id": "15" });
    await resumed.until(() => resumed.typed().length >= 3);
    assert.deepEqual(resumed.typed().map((e) => e.id), ["16", "17", "18"]);
    const old = await open("/v1/stream", { "last-event-id": "11" }); // billing reaches back to 11, orders only to 14
    await old.until(() => old.typed().length >= 1);
    assert.equal(old.typed()[0]!.event, "snapshot");
  });

  it("stream - idle streams get keepalive comments; a client that leaves is unsubscribed", async () => {
    const before = memory.listening;
    const c = await open("/v1/services/billing/stream");
    await c.until((e) => e.some((x) => x.comment === "keepalive"), 2000);
    assert.equal(memory.listening, before + 1);
    c.close();
    const deadline = Date.now() + 2000;
    while (memory.listening !== before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(memory.listening, before, "the stream's listener is removed on disconnect");
  });

  it("stream - a client that stops reading is dropped once it is too far behind, and a big snapshot alone never drops it", async () => {
    const mem = new CatalogMemory();
    const meta = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`k${i}`, "x".repeat(200)]));
    for (let i = 0; i < 50; i++) mem.load("big", `i${i}`, i + 1, rec("big", `i${i}`, { meta })); // ~90 kB snapshot
    const app3 = buildHttp({ catalog: mem, status, ready: () => true, maxBlockingWaitMs: 1000, logger: silent, stream: { maxBufferedBytes: 16_384 } });
    const url = new URL(await app3.listen({ host: "127.0.0.1", port: 0 }));
    const { connect } = await import("node:net");
    const sock = connect(Number(url.port), url.hostname);
    try {
      await new Promise<void>((r) => sock.once("connect", () => r()));
      sock.write(`GET /v1/stream HTTP/1.1\r\nHost: x\r\n\r\n`);
      await waitUntil(() => mem.listening === 2, "the stream is open"); // the ring + this stream
      sock.pause(); // a consumer that stops reading
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(mem.listening, 2, "a snapshot larger than the limit does not drop the client by itself");
      let rev = 100;
      for (; rev < 5100 && mem.listening === 2; rev++) {
        mem.apply("big", "i0", rev, rec("big", "i0", { meta, updatedAt: rev }));
        if (rev % 200 === 0) await new Promise((r) => setTimeout(r, 5)); // let the socket fill
      }
      await waitUntil(() => mem.listening === 1, "the slow stream is dropped");
      assert.ok(rev > 110, `dropped only once behind (after ${rev - 100} changes)`);
    } finally {
      sock.destroy();
      await app3.close();
    }
  });

  it("stream - 503 ROSTER_NOT_READY before the catalog is loaded", async () => {
    loaded = false;
    try {
      const c = await open("/v1/stream");
      assert.equal(c.status, 503);
      assert.equal((c.events[0]!.data as { code: string }).code, "ROSTER_NOT_READY");
    } finally {
      loaded = true;
    }
  });

  it("stream - past streams.maxOpen a new stream gets 503 ROSTER_TOO_MANY_STREAMS with Retry-After; a closed one frees its place", async () => {
    const app4 = buildHttp({ catalog: memory, status, ready: () => true, maxBlockingWaitMs: 1000, logger: silent, stream: { maxOpen: 2 } });
    const url = await app4.listen({ host: "127.0.0.1", port: 0 });
    try {
      const a = await SseClient.open(`${url}/v1/stream`);
      const b = await SseClient.open(`${url}/v1/services/orders/stream`);
      clients.push(a, b);
      await a.until(() => a.typed().length >= 1);
      await b.until(() => b.typed().length >= 1);
      const refused = await fetch(`${url}/v1/stream`);
      assert.equal(refused.status, 503);
      assert.equal(refused.headers.get("retry-after"), "5");
      assert.equal(((await refused.json()) as { code: string }).code, "ROSTER_TOO_MANY_STREAMS");
      const listening = memory.listening;
      a.close();
      await waitUntil(() => memory.listening === listening - 1, "the closed stream is released");
      const c = await SseClient.open(`${url}/v1/stream`);
      clients.push(c);
      assert.equal(c.status, 200);
    } finally {
      await app4.close();
    }
  });

  it("stream - close() ends open streams at once instead of waiting for them", async () => {
    const app2 = buildHttp({ catalog: memory, status, ready: () => true, maxBlockingWaitMs: 1000, logger: silent });
    const url = await app2.listen({ host: "127.0.0.1", port: 0 });
    const a = await SseClient.open(`${url}/v1/stream`);
    const b = await SseClient.open(`${url}/v1/services/orders/stream`);
    clients.push(a, b);
    await a.until(() => a.typed().length >= 1);
    const t0 = Date.now();
    await app2.close();
    assert.ok(Date.now() - t0 < 2000, `close took ${Date.now() - t0} ms`);
    await a.until(() => a.ended);
    await b.until(() => b.ended);
  });
});
