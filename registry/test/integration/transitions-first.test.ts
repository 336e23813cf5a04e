// Transitions first: a health flip published after a backlog of heartbeats is applied before the
// backlog is read, because heartbeats arrive on a connection of their own (nats.bulkConnection).
// The same run with one connection shows the flip waiting behind the whole backlog.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { spawnSync } from "node:child_process";
import { agentSubject } from "roster-schemas";
import { NatsServer, repoRoot, waitFor } from "roster-testkit";
import { FakeAgent, inst, startRegistry } from "./helpers.js";

const BACKLOG = 40_000;

describe("registry transitions first", () => {
  let nats: NatsServer;
  before(async () => {
    nats = await NatsServer.start();
  });
  after(async () => {
    await nats?.close();
  });

  /** Heartbeats read when the flip was applied, of BACKLOG queued before it. */
  async function heartbeatsReadBeforeFlip(bulkConnection: boolean): Promise<number> {
    const reg = await startRegistry(nats.url, { nats: { url: nats.url, reconnectWait: 100, bulkConnection }, heartbeatTimeoutMultiplier: 100 });
    const agent = await FakeAgent.connect(nats.url, `host-${bulkConnection}`, 1, 60_000);
    // Each run its own instance id: both runs share the catalog bucket, and the first run's host
    // still owns its id there (another live host's register of it is refused as a conflict).
    const id = `t-${bulkConnection}`;
    // Until registered, as a real agent: a register read before this registry holds the writer
    // lease is dropped, and the registry asks for it again once it writes.
    const resyncs = agent.answerResyncs();
    try {
      await agent.register([inst(id)]);
      await waitFor(() => reg.memory.get("orders", id)?.status === "passing", { what: "registered", timeoutMs: 20_000 });
      // Not during the flood: its heartbeats carry the digest of before the flip, and a resync
      // answered with a register would flip the instance back.
      resyncs.unsubscribe();
      const received = () => (reg.metrics as unknown as { received: Record<string, number> }).received.heartbeat!;
      const base = received();
      // Another process floods and then flips (on a second connection, after the flood is flushed)
      // while the registry — in this process — reads nothing: spawnSync holds this event loop until
      // the flooder exits, so the whole backlog waits at the server and in the sockets, however fast
      // this machine's registry reads. (Racing the flood instead failed once the registry read
      // heartbeats faster than one process sends them: all 40,000 read before the flip.)
      const beat = { v: 1, hostId: agent.hostId, epoch: 1, seq: 0, sentAt: Date.now(), kind: "heartbeat", heartbeatIntervalMs: 60_000, instanceCount: 1, digest: agent.digest() };
      const flip = { v: 1, hostId: agent.hostId, epoch: 1, seq: 1000 + BACKLOG, sentAt: Date.now(), kind: "health", service: "orders", instanceId: id, check: { id: "http-0", type: "http", status: "critical", since: Date.now() }, instanceStatus: "critical" };
      const code = `
        import { connect } from "@nats-io/transport-node";
        const [url, n, beat, flip] = [process.argv[1], Number(process.argv[2]), JSON.parse(process.argv[3]), JSON.parse(process.argv[4])];
        const a = await connect({ servers: url }), b = await connect({ servers: url });
        const te = new TextEncoder();
        for (let i = 0; i < n; i++) a.publish("${agentSubject(agent.hostId, "heartbeat")}", te.encode(JSON.stringify({ ...beat, seq: 1000 + i })));
        await a.flush();
        b.publish("${agentSubject(agent.hostId, "health")}", te.encode(JSON.stringify(flip)));
        await b.flush();
        await a.close(); await b.close();`;
      const flooder = spawnSync(process.execPath, ["--input-type=module", "-e", code, nats.url, String(BACKLOG), JSON.stringify(beat), JSON.stringify(flip)], { cwd: repoRoot, stdio: "inherit", timeout: 30_000 });
      let atFlip = -1;
      await waitFor(() => {
        if (reg.memory.get("orders", id)?.status === "critical") atFlip = received() - base;
        return atFlip >= 0;
      }, { what: "flip applied", timeoutMs: 60_000, intervalMs: 1 });
      await waitFor(() => received() - base >= BACKLOG, { what: "backlog read", timeoutMs: 60_000 });
      assert.equal(flooder.status, 0, "the flooding process");
      return atFlip;
    } finally {
      await agent.close();
      await reg.close();
    }
  }

  it("transitions first - a flip sent behind 40,000 heartbeats overtakes those not yet read", async (t) => {
    const split = await heartbeatsReadBeforeFlip(true);
    const single = await heartbeatsReadBeforeFlip(false);
    t.diagnostic(`heartbeats read before the flip: ${split} with the bulk connection, ${single} with one connection (of ${BACKLOG})`);
    assert.ok(single >= BACKLOG * 0.99, `one connection: the flip waits behind the backlog (${single})`);
    // The registry starts reading with the whole flood and the flip waiting: the flip's connection is
    // read in the first turns, beside the first chunks of heartbeats; on one connection it never is.
    assert.ok(split < BACKLOG * 0.5, `bulk connection: the flip overtakes the backlog (${split} read first)`);
  });
});
