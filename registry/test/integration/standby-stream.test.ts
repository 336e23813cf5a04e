// Event streams and history on a STANDBY replica: its catalog is a KV mirror, not its own writes,
// and a stream opened there must still see every change the writer makes.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { NatsServer, waitFor } from "roster-testkit";
import type { Registry } from "../../src/app.js";
import { FakeAgent, getJson, inst, startRegistry } from "./helpers.js";

/** Reads a server-sent event stream into `text` until aborted. */
function openStream(url: string): { text: () => string; close: () => void; ready: Promise<void> } {
  const ac = new AbortController();
  let text = "";
  const ready = (async () => {
    const res = await fetch(url, { signal: ac.signal });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    void (async () => {
      for (;;) {
        const { done, value } = await reader.read().catch(() => ({ done: true, value: undefined }));
        if (done) return;
        text += decoder.decode(value, { stream: true });
      }
    })();
  })();
  return { text: () => text, close: () => ac.abort(), ready };
}

describe("standby stream", () => {
  let nats: NatsServer;
  let writer: Registry;
  let standby: Registry;

  before(async () => {
    nats = await NatsServer.start();
    const lease = { lease: { enabled: true, ttl: "1500ms", margin: "500ms" } };
    writer = await startRegistry(nats.url, lease);
    standby = await startRegistry(nats.url, lease);
  });

  after(async () => {
    await standby?.close();
    await writer?.close();
    await nats?.close();
  });

  it("standby stream - a stream opened on the standby receives a change made through the writer; its history holds it", async () => {
    assert.equal(writer.status().role, "leader");
    assert.equal(standby.status().role, "standby");
    const all = openStream(`${standby.url}/v1/stream`);
    const one = openStream(`${standby.url}/v1/services/orders/stream`);
    const agent = await FakeAgent.connect(nats.url, "host-standby-stream");
    const stop = agent.beat();
    try {
      await Promise.all([all.ready, one.ready]);
      await waitFor(async () => all.text().includes("event: snapshot") && one.text().includes("event: snapshot"), { timeoutMs: 5000, what: "both snapshots" });
      await agent.register([inst("ss1", { address: "10.2.0.1" })]);
      const put = /event: put\ndata: (.*)\n/;
      for (const s of [all, one]) {
        await waitFor(async () => put.test(s.text()), { timeoutMs: 5000, what: "a put event on the standby's stream" });
        const data = JSON.parse(put.exec(s.text())![1]!) as { service: string; id: string; instance: { address: string } };
        assert.equal(data.service, "orders");
        assert.equal(data.id, "ss1");
        assert.equal(data.instance.address, "10.2.0.1");
      }
      const history = await getJson(`${standby.url}/v1/services/orders/history`);
      assert.equal(history.status, 200);
      assert.ok((history.body as { changes: Array<{ id: string; op: string }> }).changes.some((c) => c.id === "ss1" && c.op === "put"), "the standby's history holds the change");
      // The writer was the one that wrote it; the standby only mirrored.
      assert.equal(standby.status().role, "standby");
    } finally {
      stop();
      all.close();
      one.close();
      await agent.close();
    }
  });
});
