// One table of behaviours, run through both front-ends of the request engine: gw.request()
// and the undici dispatcher (undici.request and fetch). Same rows, same expectations: the
// concurrency cap and queue, retries, budget, deadline and outcome feedback cannot drift
// between them.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { request as undiciRequest, fetch as undiciFetch } from "undici";
import { waitFor } from "roster-testkit";
import { createGateway, type Gateway, type GatewayOptions } from "../../src/index.js";
import { Upstream, fakeRegistryFixture, makeInstance, silent } from "./helpers.js";

type Fault = Upstream["fault"];
interface Call {
  method?: "GET" | "POST";
  body?: string;
}
interface Answer {
  status?: number;
  body?: string;
  code?: string;
}

/** How a caller reaches the gateway. Errors come back as their `code` (fetch wraps them in `cause`). */
interface FrontEnd {
  name: string;
  call(gw: Gateway, service: string, c: Call): Promise<Answer>;
}

const codeOf = (err: unknown): string => {
  const e = err as { code?: string; cause?: { code?: string } };
  return e.code ?? e.cause?.code ?? String(err);
};

const FRONT_ENDS: FrontEnd[] = [
  {
    name: "request()",
    async call(gw, service, c) {
      try {
        const res = await gw.request(service, { path: "/t", method: c.method ?? "GET", body: c.body });
        return { status: res.statusCode, body: await res.body.text() };
      } catch (err) {
        return { code: codeOf(err) };
      }
    },
  },
  {
    name: "undici.request + dispatcher",
    async call(gw, service, c) {
      try {
        const res = await undiciRequest(`http://${service}/t`, { dispatcher: gw.dispatcher, method: c.method ?? "GET", body: c.body });
        return { status: res.statusCode, body: await res.body.text() };
      } catch (err) {
        return { code: codeOf(err) };
      }
    },
  },
  {
    name: "fetch + dispatcher",
    async call(gw, service, c) {
      try {
        const res = await undiciFetch(`http://${service}/t`, { dispatcher: gw.dispatcher, method: c.method ?? "GET", body: c.body });
        return { status: res.status, body: await res.text() };
      } catch (err) {
        return { code: codeOf(err) };
      }
    },
  },
];

interface Row {
  name: string;
  faults: Fault[];
  opts?: Partial<GatewayOptions>;
  /** Before the calls (kill an instance...). */
  prepare?(ups: Upstream[]): Promise<void>;
  /** The calls, sequential unless `concurrent`. */
  calls: Call[];
  concurrent?: boolean;
  check(answers: Answer[], gw: Gateway, service: string): void;
}

const noEject = { outlier: { consecutiveFailures: 0 }, breaker: { failureThreshold: 0 } };

const ROWS: Row[] = [
  {
    name: "a healthy service answers 200 from every instance",
    faults: ["ok", "ok"],
    calls: [{}, {}, {}, {}],
    check(a, gw, service) {
      assert.deepEqual(a.map((x) => x.status), [200, 200, 200, 200]);
      assert.equal(gw.stats(service)!.endpoints.reduce((s, e) => s + e.successes, 0), 4, "outcomes fed back");
      assert.equal(gw.stats(service)!.requests, 4);
    },
  },
  {
    name: "a refused connection is retried on another instance, even for a POST",
    faults: ["ok", "ok"],
    opts: { balancerOptions: noEject },
    prepare: (ups) => ups[0]!.kill(),
    // No body: fetch sends every body as a stream, which no front-end can replay.
    calls: [{ method: "POST" }, { method: "POST" }, {}, {}],
    check(a, gw, service) {
      assert.deepEqual(a.map((x) => x.status), [200, 200, 200, 200]);
      assert.ok(gw.stats(service)!.retries >= 1, "retried");
    },
  },
  {
    name: "a 503 on a GET is swallowed and retried elsewhere",
    faults: ["5xx", "ok"],
    opts: { balancerOptions: noEject },
    calls: [{}, {}, {}, {}],
    check(a, gw, service) {
      assert.deepEqual(a.map((x) => x.status), [200, 200, 200, 200]);
      assert.ok(gw.stats(service)!.retries >= 1);
    },
  },
  {
    name: "a 503 on a POST is the caller's answer (not retried)",
    faults: ["5xx", "5xx"],
    opts: { balancerOptions: noEject },
    calls: [{ method: "POST", body: "x" }],
    check(a, gw, service) {
      assert.equal(a[0]!.status, 503);
      assert.equal(gw.stats(service)!.retries, 0);
    },
  },
  {
    name: "when every try gets a 503 the last 503 is returned, after maxRetries",
    faults: ["5xx", "5xx", "5xx"],
    opts: { balancerOptions: noEject, maxRetries: 2 },
    calls: [{}],
    check(a, gw, service) {
      assert.equal(a[0]!.status, 503);
      assert.equal(gw.stats(service)!.tries, 3);
    },
  },
  {
    name: "a hung instance's try times out and the retry answers",
    faults: ["hang", "ok"],
    opts: { tryTimeout: 400, balancer: "round-robin", balancerOptions: noEject },
    calls: [{}, {}],
    check(a) {
      assert.deepEqual(a.map((x) => x.status), [200, 200]);
    },
  },
  {
    name: "a try timeout without retries is ROSTER_TRY_TIMEOUT",
    faults: ["hang"],
    opts: { tryTimeout: 100, maxRetries: 0 },
    calls: [{}],
    check(a) {
      assert.equal(a[0]!.code, "ROSTER_TRY_TIMEOUT");
    },
  },
  {
    name: "the deadline bounds every try and is ROSTER_DEADLINE_EXCEEDED",
    faults: ["hang", "hang"],
    opts: { tryTimeout: 5000, deadline: 200 },
    calls: [{}],
    check(a) {
      assert.equal(a[0]!.code, "ROSTER_DEADLINE_EXCEEDED");
    },
  },
  {
    name: "an empty retry budget refuses the retry",
    faults: ["reset", "reset"],
    opts: { retryBudget: { ratio: 0, minPerSecond: 0 }, balancerOptions: noEject },
    calls: [{}],
    check(a, gw, service) {
      assert.equal(a[0]!.code, "ROSTER_RETRY_BUDGET_EXHAUSTED");
      assert.equal(gw.stats(service)!.budgetExhausted, 1);
    },
  },
  {
    name: "a non-idempotent reset is not retried",
    faults: ["reset", "ok"],
    opts: { balancer: "round-robin", balancerOptions: noEject },
    calls: [{ method: "POST", body: "x" }, { method: "POST", body: "x" }],
    check(a) {
      const codes = a.map((x) => x.code ?? x.status).sort();
      assert.deepEqual(codes, [200, "ROSTER_UPSTREAM_FAILED"].sort());
    },
  },
  {
    name: "the concurrency cap and its queue hold for every front-end",
    faults: ["slow"],
    opts: { concurrency: { limit: 1, queue: 1 } },
    calls: [{}, {}, {}],
    concurrent: true,
    check(a, gw, service) {
      const got = a.map((x) => x.status ?? x.code).sort();
      assert.deepEqual(got, [200, 200, "ROSTER_QUEUE_FULL"].sort());
      assert.equal(gw.stats(service)!.inFlight, 0, "slots given back once the bodies are read");
    },
  },
];

describe("front-ends", () => {
  const fx = fakeRegistryFixture();
  let n = 0;

  async function setup(faults: Fault[], opts: Partial<GatewayOptions> = {}): Promise<{ service: string; ups: Upstream[]; gw: Gateway }> {
    const service = `fe${++n}`;
    const ups = await Promise.all(faults.map((_, i) => Upstream.start(`${service}-u${i}`)));
    ups.forEach((u, i) => {
      u.fault = faults[i]!;
      u.slowMs = 150;
    });
    fx.cleanups.push(async () => {
      await Promise.all(ups.map((u) => u.close()));
    });
    for (const u of ups) fx.reg.put(makeInstance(service, u.name, u.port));
    const gw = await createGateway({ nats: fx.nats.url, services: [service], logger: silent, tracing: false, ...opts });
    fx.cleanups.push(() => gw.close());
    await waitFor(() => gw.instances(service).length === ups.length, { timeoutMs: 5000, what: "instances" });
    return { service, ups, gw };
  }

  for (const row of ROWS) {
    for (const fe of FRONT_ENDS) {
      test(`front-ends - ${row.name} (${fe.name})`, async () => {
        const { service, ups, gw } = await setup(row.faults, row.opts);
        await row.prepare?.(ups);
        const answers = row.concurrent
          ? await Promise.all(row.calls.map((c) => fe.call(gw, service, c)))
          : await row.calls.reduce<Promise<Answer[]>>(async (acc, c) => [...(await acc), await fe.call(gw, service, c)], Promise.resolve([]));
        await new Promise((r) => setImmediate(r)); // a body's 'close' (which frees its slot) follows its 'end'
        row.check(answers, gw, service);
      });
    }
  }

  test("front-ends - the traffic hooks (plan, outcome, no instance) act the same through each", async () => {
    const fb = await setup(["ok"]);
    const service = `fe${++n}`;
    const ups = await Promise.all([0, 1].map((i) => Upstream.start(`${service}-u${i}`)));
    ups[0]!.fault = "hang";
    fx.cleanups.push(async () => {
      await Promise.all(ups.map((u) => u.close()));
    });
    for (const u of ups) fx.reg.put(makeInstance(service, u.name, u.port));
    const outcomes: string[] = [];
    const gw: Gateway = await createGateway({
      nats: fx.nats.url,
      services: [service, fb.service],
      logger: silent,
      tracing: false,
      balancer: "round-robin",
      balancerOptions: { ...noEject, panicThreshold: 0 },
      traffic: {
        // A per-service policy: short tries and no retry for this service only.
        plan: (svc, _req, plan) => {
          if (svc === service) {
            plan.tryTimeout = 100;
            plan.maxRetries = 0;
          }
        },
        onOutcome: (svc, ep, o) => void (svc === service && outcomes.push(`${ep.id}:${o.kind === "failure" ? o.reason : o.kind}`)),
        onNoInstance: (svc) => (svc === service ? gw.request(fb.service, { path: "/fallback" }) : undefined),
      },
    });
    fx.cleanups.push(() => gw.close());
    await waitFor(() => gw.instances(service).length === 2, { timeoutMs: 5000, what: "instances" });
    for (const fe of FRONT_ENDS) {
      outcomes.length = 0;
      const answers = [await fe.call(gw, service, {}), await fe.call(gw, service, {})];
      // One try each (maxRetries 0 from the plan): the hung instance times out at 100 ms, the other answers.
      assert.deepEqual(answers.map((a) => a.status ?? a.code).sort(), [200, "ROSTER_TRY_TIMEOUT"].sort(), fe.name);
      assert.deepEqual(outcomes.sort(), [`${service}-u0:timeout`, `${service}-u1:success`], fe.name);
    }
    // Nothing can serve (both critical, panic off): the fallback answers instead of ROSTER_NO_HEALTHY_UPSTREAM.
    for (const u of ups) fx.reg.put(makeInstance(service, u.name, u.port, { status: "critical" }));
    await waitFor(() => gw.instances(service).every((i) => i.status === "critical"), { timeoutMs: 5000, what: "critical" });
    for (const fe of FRONT_ENDS) {
      const a = await fe.call(gw, service, {});
      assert.equal(a.status, 200, fe.name);
      assert.match(a.body ?? "", /"path":"\/fallback"/, fe.name);
    }
  });

  test("front-ends - an unknown service is ROSTER_UNKNOWN_SERVICE through each", async () => {
    const { gw } = await setup(["ok"]);
    fx.reg.put(makeInstance("fe-other", "x", 1)); // the registry answers; "nosuch" is just not there
    for (const fe of FRONT_ENDS) assert.equal((await fe.call(gw, "nosuch", {})).code, "ROSTER_UNKNOWN_SERVICE", fe.name);
  });
});
