// Attack 5 of "Secure by default", replayed against a real roster-registry process: clients that
// open /v1/stream and never read. The first snapshot used to be exempt from the slow-client limit
// and encoded once per client: 30 such clients took a registry from 96 to 414 MiB. Now the bytes
// held for a stream (its first snapshot included) are capped, the snapshot is encoded once per
// revision and shared, and one client may hold only streams.maxPerClient streams.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { connect as tcpConnect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, it } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { NatsServer, waitFor } from "roster-testkit";
import { forgeRegister, getJson, instance, rssBytes, startRegistryProc, type RegistryProc } from "./registry-support.js";

const HOSTS = 30;
const PER_HOST = 100;
const FLOOD = 30;
// The defaults (streams.maxPerClient 32, streams.maxBufferedBytes 1 MiB): nothing configured.
const PER_CLIENT = 32;
const MAX_BUFFERED = 1 << 20;
// ~2 kB of meta per instance: 3,000 instances are a ~6.5 MB snapshot.
const meta = Object.fromEntries(Array.from({ length: 4 }, (_, i) => [`k${i}`, "x".repeat(500)]));

/** Opens /v1/stream on a raw socket, waits for the status line, then never reads again. */
async function openAndStall(base: string): Promise<{ sock: Socket; status: number }> {
  const url = new URL(base);
  const sock = tcpConnect(Number(url.port), url.hostname);
  const first = await new Promise<string>((resolve, reject) => {
    sock.once("error", reject);
    sock.once("data", (d: Buffer) => resolve(d.toString("latin1", 0, 64)));
    sock.write("GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  });
  sock.pause();
  return { sock, status: Number(/^HTTP\/1\.1 (\d{3})/.exec(first)?.[1] ?? 0) };
}

describe("security: event-stream flood (attack 5, real registry process)", () => {
  let nats: NatsServer;
  let dir: string;
  let registry: RegistryProc;
  let forger: NatsConnection;
  const socks: Socket[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "roster-sec-flood-"));
    nats = await NatsServer.start();
    registry = await startRegistryProc(dir, nats.url, {});
    forger = await connect({ servers: nats.url });
    for (let h = 0; h < HOSTS; h++) {
      const instances = Array.from({ length: PER_HOST }, (_, i) => ({ ...instance(`i-${h}-${i}`, "127.0.0.2", 8000 + i), meta }));
      await forgeRegister(forger, `flood-host-${h}`, { epoch: Date.now(), heartbeatIntervalMs: 60_000, instances });
    }
    await waitFor(async () => (await getJson<{ instances: number }>(`${registry.base}/v1/status`)).body.instances === HOSTS * PER_HOST, {
      timeoutMs: 120_000,
      intervalMs: 500,
      what: `${HOSTS * PER_HOST} instances in the catalog`,
    });
  });
  after(async () => {
    for (const s of socks) s.destroy();
    await forger?.close();
    await registry?.stop();
    await nats?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("stream-flood - a reading client gets the whole snapshot, then the changes after it", async () => {
    const ctl = new AbortController();
    const r = await fetch(`${registry.base}/v1/stream`, { signal: ctl.signal });
    assert.equal(r.status, 200);
    const dec = new TextDecoder();
    let buf = "";
    let snapshot: { services: Array<{ instances: unknown[] }> } | undefined;
    let changed = false;
    for await (const chunk of r.body!) {
      buf += dec.decode(chunk, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (/^event: snapshot$/m.test(block)) {
          snapshot = JSON.parse(data!) as typeof snapshot;
          // A change after the snapshot reaches the same stream.
          await forgeRegister(forger, "late-host", { epoch: Date.now(), heartbeatIntervalMs: 60_000, instances: [instance("late-1", "127.0.0.3")] });
        } else if (/^event: put$/m.test(block) && data!.includes('"late-1"')) changed = true;
      }
      if (changed) break;
    }
    ctl.abort();
    assert.equal(snapshot!.services.reduce((n, s) => n + s.instances.length, 0), HOSTS * PER_HOST);
    assert.ok(changed);
  });

  it(`stream-flood - ${FLOOD} clients that never read hold at most streams.maxBufferedBytes each: RSS stays bounded`, async () => {
    await sleep(1000);
    const before = rssBytes(registry.proc.pid);
    for (let i = 0; i < FLOOD; i++) {
      const s = await openAndStall(registry.base);
      socks.push(s.sock);
      assert.equal(s.status, 200);
    }
    await sleep(3000);
    const growth = rssBytes(registry.proc.pid) - before;
    const mib = (n: number) => (n / 1048576).toFixed(1);
    // Before: each such client held its own copy of the ~6.5 MB snapshot (~13 MiB with its encoding).
    assert.ok(growth < FLOOD * MAX_BUFFERED + 16 * 1048576, `RSS grew ${mib(growth)} MiB for ${FLOOD} stalled streams (${mib(growth / FLOOD)} MiB each)`);
  });

  it("stream-flood - past streams.maxPerClient the same client gets 429 ROSTER_TOO_MANY_CLIENT_STREAMS with Retry-After", async () => {
    while (socks.length < PER_CLIENT) {
      const s = await openAndStall(registry.base);
      socks.push(s.sock);
      assert.equal(s.status, 200, `stream ${socks.length} of ${PER_CLIENT}`);
    }
    const r = await fetch(`${registry.base}/v1/stream`);
    assert.equal(r.status, 429);
    assert.equal(r.headers.get("retry-after"), "5");
    assert.equal(((await r.json()) as { code: string }).code, "ROSTER_TOO_MANY_CLIENT_STREAMS");
    // One closed stream gives the place back.
    socks.pop()!.destroy();
    await waitFor(async () => {
      const again = await openAndStall(registry.base);
      socks.push(again.sock);
      return again.status === 200;
    }, { timeoutMs: 5000, intervalMs: 100, what: "a place freed by a closed stream" });
  });
});
