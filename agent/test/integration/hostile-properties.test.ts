// Property-based hostile input against a real agent (in-process, real nats-server, real HTTP): its
// resync subject and every route of its local API. The agent stays up, its instances are unchanged,
// every bad resync is counted, every bad request is a 4xx with the usual { code, message } body.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import fc from "fast-check";
import { pino } from "pino";
import { LIMITS, NAME_PATTERN, ResyncMessage, decode, resyncSubject } from "roster-schemas";
import { NatsServer, waitFor } from "roster-testkit";
import { build, type Agent } from "../../src/app.js";
import type { AgentConfig } from "../../src/config.js";
import { Wire } from "./helpers.js";

const HOST = "hostile-host";
const te = new TextEncoder();
const HOSTILE = ["a.b", "*", ">", "a b", "", "\u0000", "\u202eevil", "😀", "\ud800", "-x", "x".repeat(64), "%", "%ff", "..%2f", "%00"];
const hostileName = fc.oneof(fc.constantFrom(...HOSTILE), fc.string({ unit: "binary", maxLength: 80 }).filter((s) => !NAME_PATTERN.test(s)));
const wellFormed = (s: string) => s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, "\ufffd");

describe("agent hostile input, property-based (real nats-server, real HTTP)", () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let obs: NatsConnection;
  let wire: Wire;
  let agent: Agent;
  let base = "";
  let delivered = 0;
  const config: AgentConfig = { host: { id: HOST }, heartbeatIntervalMs: 200, drainPeriodMs: 0, api: { host: "127.0.0.1", port: 0 }, services: [] };
  const instancesView = async () => (await (await fetch(`${base}/v1/agent/instances`)).json()) as unknown;

  before(async () => {
    nats = await NatsServer.start({ jetstream: false });
    wire = await Wire.watch(nats.url, HOST);
    agent = build(config, { logger: pino({ level: "silent" }), nats: nats.url });
    base = (await agent.start()).apiUrl;
    await waitFor(() => agent.link.isConnected, { timeoutMs: 5000, what: "agent connected" });
    const put = await fetch(`${base}/v1/agent/instances`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "orders", port: 18080, address: "127.0.0.1" }) });
    assert.equal(put.status, 200);
    nc = await connect({ servers: nats.url });
    // Counts what reaches the agent's resync subscription (same subject, another connection).
    obs = await connect({ servers: nats.url });
    obs.subscribe(resyncSubject(HOST), { callback: () => void delivered++ });
    await obs.flush();
  });

  after(async () => {
    await obs?.close().catch(() => undefined);
    await nc?.close().catch(() => undefined);
    await agent?.close();
    await wire?.close();
    await nats?.close();
  });

  it("hostile - random payloads on the resync subject: bad ones counted, good ones answered with one register, the agent unchanged", async () => {
    const payload = fc.oneof(
      fc.uint8Array({ maxLength: 256 }),
      fc.jsonValue({ maxDepth: 3 }).map((v) => te.encode(JSON.stringify(v) ?? "null")),
      fc.integer({ min: 1000, max: 50_000 }).map((d) => te.encode("[".repeat(d) + "]".repeat(d))),
      fc.integer({ min: LIMITS.maxMessageBytes + 1, max: 600_000 }).map((n) => te.encode(JSON.stringify("x".repeat(n)))),
      // Well-formed resyncs, some for another host, some with a hostile or overlong reason.
      fc
        .record({ hostId: fc.oneof(fc.constant(HOST), fc.constant("other-host"), hostileName), reason: fc.oneof(fc.constantFrom("digest-mismatch", "☃ new-reason", "\u202e", ""), fc.string({ maxLength: 100 })) })
        .map((r) => te.encode(JSON.stringify({ v: 1, kind: "resync", ...r }))),
    );
    let valid = 0;
    let invalid = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(payload, { minLength: 1, maxLength: 6 }), async (batch) => {
        const before = await instancesView();
        const stats0 = agent.link.snapshot();
        const seen0 = delivered;
        const registers0 = wire.of("register").length;
        let good = 0;
        for (const p of batch) {
          nc.publish(resyncSubject(HOST), p);
          const r = decode(ResyncMessage, p);
          if (r.ok && r.value.hostId === HOST) good++;
        }
        await nc.flush();
        await waitFor(() => delivered - seen0 === batch.length, { what: "observer saw the batch" });
        await waitFor(() => agent.link.snapshot().droppedInvalidResync - stats0.droppedInvalidResync === batch.length - good, { what: `${batch.length - good} counted drops` });
        await waitFor(() => wire.of("register").length - registers0 >= good, { what: `${good} registers` });
        valid += good;
        invalid += batch.length - good;
        assert.equal(agent.link.snapshot().connected, true);
        assert.deepEqual(await instancesView(), before, "instances unchanged");
      }),
      { numRuns: 40 },
    );
    assert.ok(valid > 0 && invalid > 0, `both kinds generated (valid ${valid}, invalid ${invalid})`);
  });

  it("hostile - every local API route with hostile ids, verdicts, bodies and methods: never a 5xx, a rejected request changes nothing", async () => {
    const id = fc.oneof(fc.constantFrom(`${HOST}-18080`, "nope"), hostileName);
    const body = fc.oneof(
      fc.constant(undefined),
      fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? "null"),
      fc.string({ unit: "binary", maxLength: 200 }),
      fc.integer({ min: 1000, max: 50_000 }).map((d) => "[".repeat(d) + "]".repeat(d)),
      fc.constant("x".repeat(300 * 1024)), // past the body limit
      // A valid registration with one field made hostile.
      fc
        .tuple(fc.constantFrom("name", "id", "port", "address", "tags", "meta", "weight", "checks", "extra"), fc.oneof(hostileName, fc.constantFrom(-1, 0, 70_000, 1.5, null, true, {}, "80")))
        .map(([k, v]) => JSON.stringify({ name: "orders", port: 18081, address: "127.0.0.1", [k]: k === "address" && typeof v === "string" ? `${v} x` : v })),
      fc.record({ enable: fc.oneof(fc.boolean(), fc.constant("yes")), reason: fc.string({ maxLength: 300 }) }).map((b) => JSON.stringify(b)),
      fc.record({ note: fc.oneof(fc.string({ maxLength: 50 }), fc.constant("n".repeat(LIMITS.maxCheckOutputLength + 1)), fc.constant(7)) }).map((b) => JSON.stringify(b)),
    );
    const req = fc.record({
      method: fc.constantFrom("GET", "PUT", "DELETE", "POST", "PATCH", "HEAD", "OPTIONS"),
      route: fc.constantFrom("/v1/agent/instances", "/v1/agent/instances/ID", "/v1/agent/instances/ID/maintenance", "/v1/agent/instances/ID/checks/CHECK/VERDICT", "/healthz", "/ID"),
      id,
      check: fc.oneof(fc.constantFrom("ttl-0", "http-0"), hostileName),
      verdict: fc.oneof(fc.constantFrom("pass", "warn", "fail", "PASS"), hostileName),
      encode: fc.boolean(),
      contentType: fc.constantFrom("application/json", "text/plain", "application/json; charset=utf-16", undefined),
      body,
    });
    const bad = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(req, async (r) => {
        const before = await instancesView();
        const part = (s: string) => (["%", "%ff", "..%2f", "%00"].includes(s) ? s : r.encode ? encodeURIComponent(wellFormed(s)) : encodeURI(wellFormed(s)).replaceAll("?", "%3F").replaceAll("#", "%23"));
        const path = r.route.replaceAll("ID", part(r.id)).replace("CHECK", part(r.check)).replace("VERDICT", part(r.verdict));
        const sendsBody = r.body !== undefined && r.method !== "GET" && r.method !== "HEAD";
        const res = await fetch(`${base}${path}`, {
          method: r.method,
          headers: sendsBody && r.contentType ? { "content-type": r.contentType } : {},
          ...(sendsBody ? { body: r.body } : {}),
        });
        const text = await res.text();
        assert.ok(res.status < 500, `${r.method} ${path} → ${res.status} ${text.slice(0, 300)}`);
        if (res.status >= 400) {
          bad.set(res.status, (bad.get(res.status) ?? 0) + 1);
          if (r.method !== "HEAD") assert.match((JSON.parse(text) as { code?: string }).code ?? "", /^ROSTER_[A-Z_]+$/, text);
          assert.deepEqual(await instancesView(), before, "a rejected request changes nothing");
        }
      }),
      { numRuns: 250 },
    );
    assert.ok((bad.get(400) ?? 0) > 0 && (bad.get(404) ?? 0) > 0, `rejections reached: ${[...bad].join(" ")}`);
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
  });
});
