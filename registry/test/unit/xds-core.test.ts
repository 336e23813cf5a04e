import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { CatalogInstance } from "roster-schemas";
import { TYPE_URL, buildLoadAssignment, buildResource, healthOf } from "../../src/core/xds-resources.js";
import { XdsStreamState, type XdsRequest } from "../../src/core/xds-stream.js";

const inst = (id: string, over: Partial<CatalogInstance> = {}): CatalogInstance => ({
  id, service: "greeter", host: "h1", address: "10.0.0.1", port: 9000, tags: [], meta: {}, weight: 100, status: "passing", checks: [], epoch: 1, registeredAt: 0, updatedAt: 0, ...over,
});
const req = (typeUrl: string, over: Partial<XdsRequest> = {}): XdsRequest => ({ typeUrl, versionInfo: "", responseNonce: "", resourceNames: [], ...over });

describe("xDS resources - status mapping", () => {
  it("xDS resources - passing, warning, critical, agent-lost and draining map to Envoy health", () => {
    const healthy = { warningAs: "HEALTHY" as const };
    const degraded = { warningAs: "DEGRADED" as const };
    assert.equal(healthOf({ status: "passing" }, healthy), "HEALTHY");
    assert.equal(healthOf({ status: "warning" }, healthy), "HEALTHY");
    assert.equal(healthOf({ status: "warning" }, degraded), "DEGRADED");
    assert.equal(healthOf({ status: "critical" }, healthy), "UNHEALTHY");
    assert.equal(healthOf({ status: "passing", reason: "agent-lost" }, healthy), "UNHEALTHY");
    assert.equal(healthOf({ status: "draining" }, healthy), "DRAINING");
  });

  it("xDS resources - endpoints grouped by zone with locality and endpoint weights", () => {
    const cla = buildLoadAssignment("greeter", [inst("b", { zone: "z2", weight: 30 }), inst("a", { zone: "z1", weight: 50 }), inst("c", { zone: "z1", status: "critical", weight: 20 }), inst("d")], { warningAs: "HEALTHY" }) as {
      cluster_name: string;
      endpoints: Array<{ locality: { zone?: string }; load_balancing_weight: { value: number }; lb_endpoints: Array<{ health_status: string; load_balancing_weight: { value: number }; endpoint: { hostname: string } }> }>;
    };
    assert.equal(cla.cluster_name, "greeter");
    assert.deepEqual(cla.endpoints.map((e) => e.locality.zone), [undefined, "z1", "z2"]);
    const z1 = cla.endpoints[1]!;
    assert.equal(z1.load_balancing_weight.value, 70);
    assert.deepEqual(z1.lb_endpoints.map((e) => [e.endpoint.hostname, e.health_status, e.load_balancing_weight.value]), [["a", "HEALTHY", 50], ["c", "UNHEALTHY", 20]]);
  });

  it("xDS resources - an unknown service has no resources; a known one has all four", () => {
    assert.equal(buildResource("listener", "x", { known: false, instances: [] }, { warningAs: "HEALTHY" }), null);
    for (const k of ["listener", "route", "cluster", "endpoint"] as const) assert.ok(buildResource(k, "x", { known: true, instances: [] }, { warningAs: "HEALTHY" }));
  });
});

describe("xDS stream state - versions, nonces, ACK and NACK", () => {
  it("xDS stream state - first request subscribes and is due; nothing more until the ACK", () => {
    const s = new XdsStreamState();
    assert.deepEqual(s.request(req(TYPE_URL.listener, { resourceNames: ["greeter"] })), { type: "subscribe", kind: "listener" });
    assert.deepEqual(s.due(), ["listener"]);
    assert.deepEqual(s.take("listener"), { names: ["greeter"], wildcard: false, full: true });
    const nonce = s.sent("listener", "7");
    assert.deepEqual(s.due(), []);
    s.changed(["greeter"], new Set(["greeter"]));
    assert.deepEqual(s.due(), [], "one response in flight per type");
    assert.deepEqual(s.request(req(TYPE_URL.listener, { resourceNames: ["greeter"], versionInfo: "7", responseNonce: nonce })), { type: "ack", kind: "listener", version: "7" });
    assert.deepEqual(s.due(), ["listener"], "the change made meanwhile goes out after the ACK");
  });

  it("xDS stream state - a stale nonce is ignored", () => {
    const s = new XdsStreamState();
    s.request(req(TYPE_URL.endpoint, { resourceNames: ["greeter"] }));
    s.take("endpoint");
    const n1 = s.sent("endpoint", "1");
    s.request(req(TYPE_URL.endpoint, { resourceNames: ["greeter"], versionInfo: "1", responseNonce: n1 }));
    s.changed(["greeter"], new Set());
    s.take("endpoint");
    s.sent("endpoint", "2");
    assert.deepEqual(s.request(req(TYPE_URL.endpoint, { resourceNames: ["greeter", "other"], versionInfo: "1", responseNonce: n1 })), { type: "stale" });
    assert.equal(s.status().endpoint?.inFlight, true);
    assert.deepEqual(s.status().endpoint?.names, ["greeter"], "a stale request changes no subscription");
  });

  it("xDS stream state - a NACK keeps the last good version and nothing is re-sent until something changes", () => {
    const s = new XdsStreamState();
    s.request(req(TYPE_URL.endpoint, { resourceNames: ["greeter"] }));
    s.take("endpoint");
    const n1 = s.sent("endpoint", "5");
    s.request(req(TYPE_URL.endpoint, { resourceNames: ["greeter"], versionInfo: "5", responseNonce: n1 }));
    s.changed(["greeter"], new Set());
    s.take("endpoint");
    const n2 = s.sent("endpoint", "6");
    const out = s.request(req(TYPE_URL.endpoint, { resourceNames: ["greeter"], versionInfo: "5", responseNonce: n2, errorMessage: "bad weight" }));
    assert.deepEqual(out, { type: "nack", kind: "endpoint", rejected: "6", kept: "5", message: "bad weight" });
    assert.deepEqual(s.due(), [], "the rejected version is not sent again");
    assert.equal(s.status().endpoint?.acked, "5");
    assert.equal(s.counts.nacks, 1);
    s.changed(["greeter"], new Set());
    assert.deepEqual(s.take("endpoint"), { names: ["greeter"], wildcard: false, full: false });
  });

  it("xDS stream state - endpoints send only what changed; listeners and clusters always the whole set", () => {
    const s = new XdsStreamState();
    s.request(req(TYPE_URL.endpoint, { resourceNames: ["a", "b"] }));
    s.request(req(TYPE_URL.cluster, { resourceNames: ["a", "b"] }));
    s.take("endpoint");
    const ne = s.sent("endpoint", "1");
    s.take("cluster");
    const nc = s.sent("cluster", "1");
    s.request(req(TYPE_URL.endpoint, { resourceNames: ["a", "b"], versionInfo: "1", responseNonce: ne }));
    s.request(req(TYPE_URL.cluster, { resourceNames: ["a", "b", "c"], versionInfo: "1", responseNonce: nc }));
    s.changed(["b", "unrelated"], new Set());
    assert.deepEqual(s.take("endpoint"), { names: ["b"], wildcard: false, full: false });
    assert.deepEqual(s.take("cluster"), { names: ["a", "b", "c"], wildcard: false, full: true }, "a new cluster name resends the whole set");
  });

  it("xDS stream state - an added endpoint name is sent alone; an unsubscribe sends nothing", () => {
    const s = new XdsStreamState();
    s.request(req(TYPE_URL.endpoint, { resourceNames: ["a"] }));
    s.take("endpoint");
    const n = s.sent("endpoint", "1");
    s.request(req(TYPE_URL.endpoint, { resourceNames: ["a", "b"], versionInfo: "1", responseNonce: n }));
    assert.deepEqual(s.take("endpoint"), { names: ["b"], wildcard: false, full: false });
    const n2 = s.sent("endpoint", "1");
    s.request(req(TYPE_URL.endpoint, { resourceNames: ["b"], versionInfo: "1", responseNonce: n2 }));
    assert.deepEqual(s.due(), []);
    s.changed(["a"], new Set());
    assert.deepEqual(s.due(), [], "a is no longer watched");
  });

  it("xDS stream state - empty names on the first cluster request is the wildcard; a new service resends it", () => {
    const s = new XdsStreamState();
    s.request(req(TYPE_URL.cluster));
    assert.deepEqual(s.take("cluster"), { names: [], wildcard: true, full: true });
    const n = s.sent("cluster", "1");
    s.request(req(TYPE_URL.cluster, { versionInfo: "1", responseNonce: n }));
    s.changed(["x"], new Set());
    assert.deepEqual(s.due(), [], "instance changes do not change clusters");
    s.changed(["y"], new Set(["y"]));
    assert.equal(s.take("cluster")?.wildcard, true);
  });

  it("xDS stream state - unknown types are not served; a request without a nonce resubscribes", () => {
    const s = new XdsStreamState();
    assert.deepEqual(s.request(req("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret")), { type: "unknown-type" });
    s.request(req(TYPE_URL.route, { resourceNames: ["a"] }));
    s.take("route");
    s.sent("route", "3");
    assert.deepEqual(s.request(req(TYPE_URL.route, { resourceNames: ["a"], versionInfo: "3" })), { type: "subscribe", kind: "route" });
    assert.deepEqual(s.take("route"), { names: ["a"], wildcard: false, full: true });
  });

  it("xDS stream state - nonces are unique on a stream", () => {
    const s = new XdsStreamState();
    s.request(req(TYPE_URL.listener, { resourceNames: ["a"] }));
    s.request(req(TYPE_URL.cluster, { resourceNames: ["a"] }));
    s.take("listener");
    s.take("cluster");
    assert.notEqual(s.sent("listener", "1"), s.sent("cluster", "1"));
  });

  it("xDS stream state - a shared nonce is taken only if it is above every nonce sent on the stream", () => {
    const s = new XdsStreamState();
    s.request(req(TYPE_URL.endpoint, { resourceNames: ["a"] }));
    s.request(req(TYPE_URL.cluster, { resourceNames: ["a"] }));
    s.take("endpoint");
    assert.equal(s.sent("endpoint", "1", 40), "40", "the push's nonce, shared with other streams");
    assert.equal(s.acceptsNonce(40), false);
    assert.equal(s.acceptsNonce(41), true);
    s.take("cluster");
    assert.throws(() => s.sent("cluster", "1", 39), /not above 40/, "an older push's nonce would not be unique on this stream");
    assert.equal(s.sent("cluster", "1"), "41", "without one, the stream's next");
  });
});
