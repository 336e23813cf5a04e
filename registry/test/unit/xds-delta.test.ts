import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { TYPE_URL } from "../../src/core/xds-resources.js";
import { XdsDeltaState, type XdsDeltaRequest } from "../../src/core/xds-delta.js";

const req = (typeUrl: string, over: Partial<XdsDeltaRequest> = {}): XdsDeltaRequest => ({ typeUrl, subscribe: [], unsubscribe: [], initialVersions: {}, responseNonce: "", ...over });

describe("xDS delta state - incremental subscriptions and versions", () => {
  it("xDS delta state - a subscription is due; only resources whose version the client lacks are sent", () => {
    const d = new XdsDeltaState();
    assert.deepEqual(d.request(req(TYPE_URL.endpoint, { subscribe: ["a", "b"], initialVersions: { a: "7" } })), { type: "subscribe", kind: "endpoint" });
    assert.deepEqual(d.take("endpoint"), { names: ["a", "b"], all: false, wildcard: false });
    assert.equal(d.differs("endpoint", "a", "7"), false, "the client already holds a@7");
    assert.equal(d.differs("endpoint", "b", "3"), true);
    const n = d.sent("endpoint", new Map([["b", "3"]]), []);
    d.changed(["a"], new Set());
    assert.deepEqual(d.due(), [], "one response in flight");
    assert.deepEqual(d.request(req(TYPE_URL.endpoint, { responseNonce: n })), { type: "ack", kind: "endpoint" });
    assert.deepEqual(d.take("endpoint"), { names: ["a"], all: false, wildcard: false });
  });

  it("xDS delta state - unsubscribe forgets a name; a resource gone is a removal only if the client held it", () => {
    const d = new XdsDeltaState();
    d.request(req(TYPE_URL.cluster, { subscribe: ["a", "b"] }));
    d.take("cluster");
    const n = d.sent("cluster", new Map([["a", "1"]]), []);
    d.request(req(TYPE_URL.cluster, { responseNonce: n, unsubscribe: ["b"] }));
    assert.equal(d.differs("cluster", "a", null), true, "a held, now gone: removal");
    assert.equal(d.differs("cluster", "b", null), false, "b never held: nothing to say");
    d.changed(["b"], new Set(["b"]));
    assert.deepEqual(d.due(), [], "b is no longer watched");
  });

  it("xDS delta state - a NACK is counted and does not resend; a stale nonce is ignored", () => {
    const d = new XdsDeltaState();
    d.request(req(TYPE_URL.endpoint, { subscribe: ["a"] }));
    d.take("endpoint");
    const n1 = d.sent("endpoint", new Map([["a", "1"]]), []);
    assert.deepEqual(d.request(req(TYPE_URL.endpoint, { responseNonce: "d999" })), { type: "stale", kind: "endpoint" });
    assert.deepEqual(d.request(req(TYPE_URL.endpoint, { responseNonce: n1, errorMessage: "no" })), { type: "nack", kind: "endpoint", message: "no" });
    assert.equal(d.counts.nacks, 1);
    assert.deepEqual(d.due(), []);
  });

  it("xDS delta state - an empty first cluster request is the wildcard; a new service is due", () => {
    const d = new XdsDeltaState();
    d.request(req(TYPE_URL.cluster));
    assert.deepEqual(d.take("cluster"), { names: [], all: true, wildcard: true });
    const n = d.sent("cluster", new Map(), []);
    d.request(req(TYPE_URL.cluster, { responseNonce: n }));
    d.changed(["x"], new Set(["x"]));
    assert.deepEqual(d.take("cluster"), { names: ["x"], all: false, wildcard: true });
  });

  it("xDS delta state - a shared nonce must rise on the stream", () => {
    const d = new XdsDeltaState();
    d.request(req(TYPE_URL.endpoint, { subscribe: ["a"] }));
    d.take("endpoint");
    const n = d.sent("endpoint", new Map([["a", "1"]]), [], 7);
    assert.equal(n, "7");
    assert.deepEqual(d.request(req(TYPE_URL.endpoint, { responseNonce: "7" })), { type: "ack", kind: "endpoint" });
    d.changed(["a"], new Set());
    d.take("endpoint");
    assert.throws(() => d.sent("endpoint", new Map([["a", "2"]]), [], 7));
  });
});
