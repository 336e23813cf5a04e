// Transitions first, against bulk work: snapshot requests wait in the bulk lane, so a health flip
// read behind a herd of them is handled before most are answered (it used to wait for every one);
// past the lane's bounds requests are answered `snapshot-busy` and counted; HTTP bodies get 503 +
// Retry-After while the registry sheds (a 304 still answers).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { spawn } from "node:child_process";
import { connect } from "@nats-io/transport-node";
import { PROTOCOL_VERSION, SnapshotReply, SnapshotRequest, agentSubject, decode, encode, snapshotSubject } from "roster-schemas";
import { NatsServer, metricValue, repoRoot, scrape, waitFor } from "roster-testkit";
import { FakeAgent, getJson, inst, startRegistry } from "./helpers.js";

const HERD = 400;

describe("registry bulk lane", () => {
  let nats: NatsServer;
  before(async () => {
    nats = await NatsServer.start();
  });
  after(async () => {
    await nats?.close();
  });

  it("bulk lane - a flip read behind 400 snapshot requests is handled before most of them are answered", { timeout: 120_000 }, async (t) => {
    const reg = await startRegistry(nats.url, { heartbeatTimeoutMultiplier: 100, bulkLane: { enabled: true } });
    const agents: FakeAgent[] = [];
    try {
      // A service of ~120 KB (one page), on three hosts; and the instance to flip.
      for (let h = 0; h < 3; h++) {
        const a = await FakeAgent.connect(nats.url, `big-${h}`, 1, 60_000);
        agents.push(a);
        await a.register(Array.from({ length: 100 }, (_, i) => inst(`b-${h}-${i}`, { service: "big", meta: { blob: "x".repeat(200) } })));
      }
      const flipper = await FakeAgent.connect(nats.url, "flipper", 1, 60_000);
      agents.push(flipper);
      await flipper.register([inst("f-1")]);
      await waitFor(() => reg.memory.instanceCount === 301 && reg.memory.get("orders", "f-1")?.status === "passing", { what: "registered" });

      const base = reg.status().snapshotsServed as number;
      let servedAtFlip = -1;
      const message = reg.metrics.message.bind(reg.metrics);
      // The moment the flip is read: how many snapshot requests had been answered by then.
      reg.metrics.message = (kind) => {
        if (kind === "health" && servedAtFlip < 0) servedAtFlip = (reg.status().snapshotsServed as number) - base;
        message(kind);
      };
      const request = encode(SnapshotRequest, { v: PROTOCOL_VERSION, kind: "snapshot-request", page: 0 });
      const flip = { v: 1, hostId: "flipper", epoch: 1, seq: 100, sentAt: Date.now(), kind: "health", service: "orders", instanceId: "f-1", check: { id: "http-0", type: "http", status: "critical", since: Date.now() }, instanceStatus: "critical" };
      // Another process: the herd (its answers are read there, not in the registry's process), then the flip.
      const code = `
        import { connect } from "@nats-io/transport-node";
        const [url, n, req, subject, flipSubject, flip] = process.argv.slice(1);
        const a = await connect({ servers: url }), b = await connect({ servers: url });
        const te = new TextEncoder(), td = new TextDecoder();
        const asks = [];
        for (let i = 0; i < Number(n); i++) asks.push(a.request(subject, te.encode(req), { timeout: 60000 }));
        await a.flush();
        b.publish(flipSubject, te.encode(flip));
        await b.flush();
        const kinds = { snapshot: 0, "snapshot-busy": 0, failed: 0 };
        for (const r of await Promise.allSettled(asks)) {
          if (r.status === "rejected") kinds.failed++;
          else kinds[JSON.parse(td.decode(r.value.data)).kind]++;
        }
        console.log(JSON.stringify(kinds));
        await a.close(); await b.close();`;
      const child = spawn(
        process.execPath,
        ["--input-type=module", "-e", code, nats.url, String(HERD), new TextDecoder().decode(request), snapshotSubject("big"), agentSubject("flipper", "health"), JSON.stringify(flip)],
        { cwd: repoRoot, stdio: ["ignore", "pipe", "inherit"] },
      );
      let out = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      const exited = new Promise((r) => child.on("exit", r));
      await waitFor(() => reg.memory.get("orders", "f-1")?.status === "critical", { what: "flip applied", timeoutMs: 60_000 });
      assert.equal(await exited, 0, "the herd process");
      const kinds = JSON.parse(out) as { snapshot: number; "snapshot-busy": number; failed: number };
      const st = reg.status() as unknown as { snapshotsServed: number; bulk: { shed: Record<string, number> } };
      const served = st.snapshotsServed - base;
      assert.equal(kinds.failed, 0, `every request answered: ${out}`);
      assert.equal(kinds.snapshot, served);
      assert.equal(kinds.snapshot + kinds["snapshot-busy"], HERD);
      assert.equal(st.bulk.shed["queue-full"], kinds["snapshot-busy"], "every busy answer counted");
      assert.ok(servedAtFlip >= 0, "the flip was read");
      // Inline answers served all 400 before the flip behind them was read.
      t.diagnostic(`flip read after ${servedAtFlip} of ${served} answers (${kinds["snapshot-busy"]} busy)`);
      assert.ok(servedAtFlip < served / 2, `the flip was read after ${servedAtFlip} of ${served} answers`);
    } finally {
      for (const a of agents) await a.close();
      await reg.close();
    }
  });

  it("bulk lane - past maxQueued requests are answered snapshot-busy and counted; HTTP bodies past 1/s get 503 + Retry-After while the loop lags, 304 still answered", { timeout: 60_000 }, async () => {
    const reg = await startRegistry(nats.url, { bulkLane: { enabled: true, maxQueued: 5, maxLag: "100ms", overloadedBodiesPerSecond: 1 } });
    const agent = await FakeAgent.connect(nats.url, "small", 1, 60_000);
    const nc = await connect({ servers: nats.url });
    try {
      await agent.register([inst("s-1"), ...Array.from({ length: 300 }, (_, i) => inst(`c-${i}`, { service: "big2", meta: { blob: "x".repeat(200) } }))]);
      await waitFor(() => reg.memory.get("orders", "s-1") !== undefined && reg.memory.service("big2").instances.length === 300, { what: "registered" });
      // One burst, one flush, read together: a few ms of pages are answered at once, 5 wait, the rest are refused.
      const asks = Array.from({ length: 200 }, () => nc.request(snapshotSubject("big2"), new Uint8Array(0), { timeout: 20_000 }));
      const replies = await Promise.all(asks);
      const kinds = replies.map((m) => {
        const d = decode(SnapshotReply, m.data);
        assert.ok(d.ok, d.ok ? "" : d.error);
        if (d.value.kind === "snapshot-busy") assert.ok(d.value.retryAfterMs >= 200 && d.value.retryAfterMs <= 5000, `retryAfterMs ${d.value.retryAfterMs}`);
        return d.value.kind;
      });
      const busy = kinds.filter((k) => k === "snapshot-busy").length;
      assert.ok(busy >= 1 && busy <= 195, `busy answers: ${busy}`);
      const metrics = await scrape(`${reg.url}/metrics`);
      assert.equal(metricValue(metrics, "roster_registry_bulk_shed_total", { reason: "queue-full" }), busy);

      // HTTP: a blocked event loop is what a transition would wait behind: bodies are shed.
      const url = `${reg.url}/v1/services/orders/instances`;
      // The refused burst above counts as overload for a second (holdMs): wait for it to pass.
      let ok = await getJson(url);
      const calm = async () => {
        for (let i = 0; i < 3; i++) if ((ok = await getJson(url)).status !== 200) return false;
        return true;
      };
      await waitFor(calm, { what: "bodies served after the hold", timeoutMs: 10_000 });
      const etag = ok.headers.get("etag")!;
      const until = Date.now() + 300;
      while (Date.now() < until); // the lag probe sees ~300 ms > maxLag
      await new Promise((r) => setTimeout(r, 60));
      // Overloaded: a body still to build is bulk work: one a second still goes out (nobody starves),
      // the others are refused. A held body (the one asked above) is a socket write: always served.
      const tries = [await getJson(`${url}?tag=t1`), await getJson(`${url}?tag=t2`), await getJson(`${url}?tag=t3`)];
      const shed = tries.find((r) => r.status === 503);
      assert.ok(shed, `a body refused while overloaded: ${tries.map((r) => r.status).join(",")}`);
      assert.ok(tries.filter((r) => r.status === 200).length <= 2, "at most the bucket's token and one refill");
      assert.equal((shed.body as { code: string }).code, "ROSTER_OVERLOADED");
      assert.ok(Number(shed.headers.get("retry-after")) >= 1, "Retry-After in seconds");
      assert.equal((await getJson(url)).status, 200, "a held body is served while overloaded");
      const notModified = await fetch(url, { headers: { "if-none-match": etag } });
      assert.equal(notModified.status, 304, "a 304 costs nothing: still answered");
      assert.equal((await getJson(`${reg.url}/v1/status`)).status, 200, "status is not bulk");
      const after = await scrape(`${reg.url}/metrics`);
      assert.ok((metricValue(after, "roster_registry_bulk_shed_total", { reason: "http" }) ?? 0) >= 1);
      await waitFor(async () => (await getJson(url)).status === 200, { what: "bodies served again after the hold", timeoutMs: 5000 });
    } finally {
      await nc.close();
      await agent.close();
      await reg.close();
    }
  });
});
