// OpenTelemetry through the SDK's in-memory exporter, and the diagnostics_channel tracing
// channel: a client span per request, a child span per try with its attributes, events for
// ejection, budget refusal and panic, and a W3C traceparent on every try that matches its span.
import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import diagnostics_channel from "node:diagnostics_channel";
import { trace } from "@opentelemetry/api";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { request as undiciRequest } from "undici";
import { waitFor } from "roster-testkit";
import { createGateway, REQUEST_CHANNEL, TRY_END_CHANNEL, type Gateway, type GatewayOptions, type RequestChannelMessage, type TryChannelMessage } from "../../src/index.js";
import { Upstream, fakeRegistryFixture, makeInstance, silent } from "./helpers.js";

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });

const parentOf = (s: ReadableSpan): string | undefined =>
  (s as unknown as { parentSpanContext?: { spanId: string } }).parentSpanContext?.spanId ?? (s as unknown as { parentSpanId?: string }).parentSpanId;

describe("tracing", () => {
  const fx = fakeRegistryFixture();
  after(() => trace.disable());
  let n = 0;

  async function setup(faults: Array<Upstream["fault"] | "refused">, opts: Partial<GatewayOptions> = {}, status: Array<"passing" | "critical"> = []): Promise<{ service: string; ups: Upstream[]; gw: Gateway }> {
    const service = `trc${++n}`;
    const ups = await Promise.all(faults.map((_, i) => Upstream.start(`${service}-u${i}`)));
    fx.cleanups.push(async () => {
      await Promise.all(ups.map((u) => u.close()));
    });
    for (const [i, u] of ups.entries()) {
      if (faults[i] !== "refused") u.fault = faults[i] as Upstream["fault"];
      fx.reg.put(makeInstance(service, u.name, u.port, { status: status[i] ?? "passing" }));
    }
    for (const [i, u] of ups.entries()) if (faults[i] === "refused") await u.kill();
    const gw = await createGateway({ nats: fx.nats.url, services: [service], logger: silent, balancer: "round-robin", ...opts });
    fx.cleanups.push(() => gw.close());
    await waitFor(() => gw.instances(service).length === ups.length, { timeoutMs: 5000, what: "instances" });
    return { service, ups, gw };
  }

  test("tracing - a span per request and per try, retry attributes, ejection event, traceparent on the wire (global provider)", async () => {
    trace.setGlobalTracerProvider(provider);
    exporter.reset();
    const { service, ups, gw } = await setup(["refused", "ok"]);
    // Round robin starts at one of the two: two requests make sure one meets the refused instance first.
    for (let i = 0; i < 2; i++) await (await gw.request(service, { path: `/p${i}` })).body.dump();
    await waitFor(() => exporter.getFinishedSpans().filter((s) => s.name.endsWith(" try")).length >= 3, { timeoutMs: 2000, what: "spans" });
    const spans = exporter.getFinishedSpans();
    const requests = spans.filter((s) => s.name === `GET ${service}`);
    const tries = spans.filter((s) => s.name === `GET ${service} try`);
    assert.equal(requests.length, 2);
    assert.equal(tries.length, 3, "one request was retried");
    for (const t of tries) {
      const parent = requests.find((r) => r.spanContext().spanId === parentOf(t));
      assert.ok(parent, "every try is a child of its request's span");
      assert.equal(t.spanContext().traceId, parent.spanContext().traceId);
      assert.equal(t.attributes["roster.service"], service);
      assert.equal(t.attributes["server.address"], "127.0.0.1");
      assert.equal(typeof t.attributes["server.port"], "number");
      assert.ok(String(t.attributes["roster.instance.id"]).startsWith(service));
    }
    const refused = tries.find((t) => t.attributes["roster.outcome"] === "refused")!;
    assert.ok(refused, "the refused try is traced");
    assert.equal(refused.attributes["roster.attempt"], 1);
    assert.equal(refused.attributes["roster.try.kind"], "first");
    const retry = tries.find((t) => t.attributes["roster.try.kind"] === "retry")!;
    assert.equal(retry.attributes["roster.attempt"], 2);
    assert.equal(retry.attributes["roster.outcome"], "success");
    assert.equal(retry.attributes["http.response.status_code"], 200);
    assert.equal(parentOf(retry), parentOf(refused), "the retry belongs to the same request");
    const retried = requests.find((r) => r.spanContext().spanId === parentOf(retry))!;
    assert.ok(retried.events.some((e) => e.name === "roster.ejection"), "the refused instance's ejection is an event");
    assert.equal(retried.attributes["http.response.status_code"], 200);
    // The traceparent the upstream saw is the span of the try that reached it.
    const tp = String(ups[1]!.lastHeaders["traceparent"]);
    const last = tries.filter((t) => t.attributes["roster.outcome"] === "success").map((t) => `00-${t.spanContext().traceId}-${t.spanContext().spanId}-01`);
    assert.ok(last.includes(tp), `traceparent ${tp} is one of the successful tries' spans`);
  });

  test("tracing - budget refusal and panic are events; the dispatcher is traced the same way", async () => {
    exporter.reset();
    const { service, gw } = await setup(["reset", "reset"], { retryBudget: { ratio: 0, minPerSecond: 0 }, tracing: { tracerProvider: provider } }, ["critical", "critical"]);
    await assert.rejects(async () => (await undiciRequest(`http://${service}/`, { dispatcher: gw.dispatcher })).body.dump());
    const req = exporter.getFinishedSpans().find((s) => s.name === `GET ${service}`)!;
    assert.ok(req, "the request span");
    const names = req.events.map((e) => e.name);
    assert.ok(names.includes("roster.budget-refused"), names.join());
    assert.ok(names.includes("roster.panic"), names.join());
    assert.equal(req.status.code, 2, "error status");
    assert.equal(req.attributes["error.type"], "ROSTER_RETRY_BUDGET_EXHAUSTED");
  });

  test("tracing - tracing: false records nothing and sends no traceparent", async () => {
    trace.setGlobalTracerProvider(provider);
    exporter.reset();
    const { service, ups, gw } = await setup(["ok"], { tracing: false });
    await (await gw.request(service)).body.dump();
    assert.equal(exporter.getFinishedSpans().length, 0);
    assert.equal(ups[0]!.lastHeaders["traceparent"], undefined);
  });

  test("tracing - diagnostics_channel: the request tracing channel and a message per try", async () => {
    const { service, gw } = await setup(["ok"], { tracing: false });
    const starts: RequestChannelMessage[] = [];
    const ends: RequestChannelMessage[] = [];
    const tries: TryChannelMessage[] = [];
    const ch = diagnostics_channel.tracingChannel<RequestChannelMessage>(REQUEST_CHANNEL);
    const none = (): void => {};
    const subs = { start: (m: RequestChannelMessage) => void starts.push(m), end: none, asyncStart: none, asyncEnd: (m: RequestChannelMessage) => void ends.push(m), error: none };
    const onTry = (m: unknown): void => void tries.push({ ...(m as TryChannelMessage) });
    ch.subscribe(subs);
    diagnostics_channel.subscribe(TRY_END_CHANNEL, onTry);
    try {
      await (await gw.request(service, { path: "/dc" })).body.dump();
    } finally {
      ch.unsubscribe(subs);
      diagnostics_channel.unsubscribe(TRY_END_CHANNEL, onTry);
    }
    assert.equal(starts.length, 1);
    assert.equal(starts[0]!.service, service);
    assert.equal(starts[0]!.path, "/dc");
    assert.equal(ends[0]!.statusCode, 200);
    assert.equal(tries.length, 1);
    assert.equal(tries[0]!.outcome, "success");
    assert.equal(tries[0]!.attempt, 1);
    assert.equal(tries[0]!.statusCode, 200);
  });
});
