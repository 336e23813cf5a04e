import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Policy, PolicyDelta, PolicySpec, formatIssues, inSubset, policySnapshotSubject, policySubject, splitShares } from "../../src/index.js";

const issueExample = {
  subsets: { stable: { tags: ["v1"] }, canary: { meta: { version: "2.0.0" } } },
  split: [
    { subset: "stable", weight: 95 },
    { subset: "canary", weight: 5 },
  ],
  routes: [{ match: { headers: { "x-canary": "always" } }, subset: "canary" }],
  affinity: { header: "x-user-id" },
  timeouts: { try: "500ms", deadline: "2s" },
  retries: { max: 2 },
  balancer: "ring-hash",
  throttle: { adaptive: true },
  rateLimit: { perSecond: 500, burst: 100 },
  fallback: { status: 503, body: '{"error":"try later"}', headers: { "retry-after": "2" } },
};

function issues(input: unknown): string[] {
  const r = PolicySpec.safeParse(input);
  return r.success ? [] : formatIssues(r.error);
}

describe("policy schema", () => {
  it("policy schema - the issue's example parses, durations to milliseconds", () => {
    const p = PolicySpec.parse(issueExample);
    assert.equal(p.timeouts?.try, 500);
    assert.equal(p.timeouts?.deadline, 2000);
    assert.deepEqual(p.split?.map((e) => e.weight), [95, 5]);
  });

  it("policy schema - a bad field is named", () => {
    assert.match(issues({ ...issueExample, timeouts: { try: "soon" } }).join(), /timeouts\.try/);
    assert.match(issues({ ...issueExample, split: [{ subset: "nope", weight: 1 }] }).join(), /split\[0\]\.subset: unknown subset "nope"/);
    assert.match(issues({ ...issueExample, routes: [{ match: { headers: { "x-a": "1" } }, subset: "ghost" }] }).join(), /routes\[0\]\.subset/);
    assert.match(issues({ ...issueExample, split: [{ subset: "stable", weight: 0 }] }).join(), /split: at least one weight/);
    assert.match(issues({ ...issueExample, split: [{ subset: "stable", weight: -1 }] }).join(), /split\[0\]\.weight/);
    assert.match(issues({ ...issueExample, balancer: "fastest" }).join(), /balancer/);
    assert.match(issues({ ...issueExample, fallback: {} }).join(), /fallback/);
    assert.match(issues({ ...issueExample, fallback: { body: "x" } }).join(), /fallback\.status/);
    assert.match(issues({ ...issueExample, affinity: { header: "X-Upper" } }).join(), /affinity/);
    assert.match(issues({ ...issueExample, balancer: "round-robin" }).join(), /balancer: an affinity needs/);
  });

  it("policy schema - unknown fields: rejected from an operator, dropped by a receiver", () => {
    assert.match(issues({ ...issueExample, splitt: [] }).join(), /splitt/);
    assert.match(issues({ ...issueExample, retries: { max: 1, maxx: 2 } }).join(), /maxx/);
    const loose = Policy.parse({ ...issueExample, future: { x: 1 } }) as Record<string, unknown>;
    assert.equal(loose.future, undefined);
    assert.equal(loose.balancer, "ring-hash");
  });

  it("policy schema - weights of any scale, blue/green as 100/0", () => {
    assert.deepEqual(issues({ subsets: { a: {}, b: {} }, split: [{ subset: "a", weight: 0.95 }, { subset: "b", weight: 0.05 }] }), []);
    assert.deepEqual(issues({ subsets: { a: {}, b: {} }, split: [{ subset: "a", weight: 100 }, { subset: "b", weight: 0 }] }), []);
    assert.deepEqual(issues({}), []);
  });

  it("policy schema - sizes are bounded", () => {
    const subsets = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`s${i}`, {}]));
    assert.match(issues({ subsets }).join(), /subsets: at most 16/);
    assert.match(issues({ fallback: { status: 503, body: "x".repeat(16 * 1024 + 1) } }).join(), /fallback\.body/);
  });

  it("policy schema - deltas and subjects", () => {
    assert.equal(policySubject("web"), "roster.v1.policy.web");
    assert.equal(policySnapshotSubject("web"), "roster.v1.registry.policy.web");
    assert.throws(() => policySubject("a.b"), /invalid service/);
    assert.ok(PolicyDelta.safeParse({ v: 1, kind: "policy-delta", op: "put", service: "web", revision: 3, prevRevision: 1, policy: issueExample }).success);
    assert.ok(PolicyDelta.safeParse({ v: 1, kind: "policy-delta", op: "delete", service: "web", revision: 4, prevRevision: 3 }).success);
    assert.ok(!PolicyDelta.safeParse({ v: 1, kind: "policy-delta", op: "put", service: "a.b", revision: 3, prevRevision: 1, policy: {} }).success);
  });

  it("policy schema - subsets by tags and meta; shares redistributed away from an unusable subset", () => {
    const inst = { tags: ["v1", "blue"], meta: { version: "1.0.0" } };
    assert.ok(inSubset({ tags: ["v1"] }, inst));
    assert.ok(inSubset({}, inst));
    assert.ok(!inSubset({ tags: ["v1", "green"] }, inst));
    assert.ok(inSubset({ meta: { version: "1.0.0" } }, inst));
    assert.ok(!inSubset({ meta: { version: "2.0.0" } }, inst));
    const split = [{ subset: "a", weight: 60 }, { subset: "b", weight: 30 }, { subset: "c", weight: 10 }];
    const all = splitShares(split, () => true).map((s) => s.share);
    assert.deepEqual(all.map((x) => Math.round(x * 100)), [60, 30, 10]);
    const noB = splitShares(split, (s) => s !== "b");
    assert.deepEqual(noB.map((s) => Math.round(s.share * 1000)), [857, 0, 143]);
    assert.deepEqual(noB.map((s) => Math.round(s.configured * 100)), [60, 30, 10]);
    assert.deepEqual(splitShares(split, () => false).map((s) => s.share), [0, 0, 0]);
  });
});
