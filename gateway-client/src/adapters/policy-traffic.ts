// Service traffic policies in the request engine, through its traffic hooks (so request() and
// the fetch/undici dispatcher honour them alike): per request the policy runtime admits it (rate
// limit, adaptive throttling), resolves timeouts/retries, chooses the subset (routes, split,
// redistribution) and the affinity key; picking happens inside the subset's own ServiceBalancer
// (panic, zones, ejection stay per subset), leaving it only when it has no other usable instance.
// Outcomes feed throttling and Retry-After back-off; fallbacks answer when nothing can serve.
import { Readable } from "node:stream";
import type { Dispatcher } from "undici";
import type { CatalogInstance } from "roster-schemas";
import type { InstanceChange } from "../core/service-mirror.js";
import { ServiceBalancer, toEndpoint, type BalancerOptionsInput } from "../core/service-balancer.js";
import type { Endpoint, NoHealthyReasons, Outcome, PickContext, PickResult } from "../core/types.js";
import type { ServicePolicyRuntime, PolicyRequest } from "../core/policy/runtime.js";
import type { FallbackResponse } from "../core/policy/fallback.js";
import { headerLookup, type AnyHeaders } from "../core/policy/headers.js";
import type { GatewayDefaults } from "../core/policy/resolve.js";
import { callerDeadline } from "../core/decide.js";
import { nowMs } from "./clock.js";
import { LocalRateLimitedError, ThrottledError } from "../policy-errors.js";
import { DEADLINE_HEADER, type PlanBalancer, type RequestOptions, type RequestPlan, type TrafficHooks } from "./engine.js";
import type { PolicyMirror } from "./policy-mirror.js";
import { PolicyRuntimes, type PolicyInForce } from "./policy-runtimes.js";

/** What the gateway hears from the policies (events, metrics). */
export interface PolicyTrafficEvents {
  /** A request's subset had no usable instance and another subset took its share. */
  redistributed(service: string, wanted: string | undefined, via: "route" | "split"): void;
}

interface ServiceState {
  readonly rt: ServicePolicyRuntime;
  /** The service's instances; undefined after single-instance changes until asked for (`source`). */
  instances: readonly CatalogInstance[] | undefined;
  /** Where the whole list comes from when `instances` is undefined. */
  source: () => readonly CatalogInstance[];
  /** One balancer per subset (policy with subsets), or one for the whole service (balancer/affinity only). */
  balancers: Map<string | undefined, ServiceBalancer>;
  /** Whether a policy is in force (revision > 0): without one the hooks do nothing. */
  active: boolean;
  redistributed: number;
}

/** A request's picker: its subset first, then (only when the subset cannot serve) the spill order. */
class SubsetPicker implements PlanBalancer {
  ejectionsTotal = 0;
  constructor(
    private readonly st: ServiceState,
    private readonly order: readonly (string | undefined)[],
  ) {}

  pick(ctx: PickContext): PickResult {
    let last: PickResult | undefined;
    let again: PickResult | undefined;
    for (const name of this.order) {
      const b = this.st.balancers.get(name);
      if (!b) continue;
      const r = pickAvoidingBackoff(this.st.rt, b, ctx);
      // A balancer whose every instance is excluded picks one of them again: that is a miss
      // here, so a retry leaves the subset (for the next one in the spill order) only then.
      if (r.ok && !ctx.exclude?.has(r.endpoint.id)) return r;
      if (r.ok) again ??= r;
      else last = r;
    }
    return again ?? last ?? { ok: false, reasons: { known: 0, draining: 0, critical: 0, ejected: 0, circuitOpen: 0, excluded: 0 } as unknown as NoHealthyReasons };
  }

  onStart(id: string, now: number): void {
    for (const b of this.st.balancers.values()) b.onStart(id, now);
  }

  onResult(id: string, outcome: Outcome, now: number): void {
    let total = 0;
    for (const b of this.st.balancers.values()) {
      b.onResult(id, outcome, now);
      total += b.ejectionsTotal;
    }
    this.ejectionsTotal = total;
  }
}

/** Leaves out instances that asked (429/503 + Retry-After) for a pause, unless nothing else can serve. */
function pickAvoidingBackoff(rt: ServicePolicyRuntime, b: ServiceBalancer, ctx: PickContext): PickResult {
  let ex: Set<string> | undefined;
  for (const ep of b.endpoints) {
    if (rt.backingOff(ep.id, ctx.now)) (ex ??= new Set(ctx.exclude ?? [])).add(ep.id);
  }
  if (ex) {
    const r = b.pick({ ...ctx, exclude: ex });
    if (r.ok && !r.panic) return r;
  }
  return b.pick(ctx);
}

/** A fallback answer as undici's ResponseData (a body with the mixins callers use). */
export function fallbackResponseData(fb: FallbackResponse): Dispatcher.ResponseData {
  const bytes = Buffer.from(fb.body);
  const body = Readable.from(bytes.length > 0 ? [bytes] : []) as unknown as Dispatcher.ResponseData["body"] & Record<string, unknown>;
  const text = async (): Promise<string> => {
    const chunks: Buffer[] = [];
    for await (const c of body as unknown as AsyncIterable<Buffer>) chunks.push(Buffer.from(c));
    return Buffer.concat(chunks).toString("utf8");
  };
  Object.assign(body, {
    text,
    json: async () => JSON.parse(await text()) as unknown,
    arrayBuffer: async () => {
      const t = Buffer.from(await text());
      return t.buffer.slice(t.byteOffset, t.byteOffset + t.byteLength);
    },
    bytes: async () => new Uint8Array(Buffer.from(await text())),
    dump: async () => {
      (body as unknown as Readable).resume();
    },
  });
  const headers: Record<string, string> = { ...fb.headers, "content-length": String(bytes.length) };
  return { statusCode: fb.status, headers, body, trailers: {}, opaque: null, context: {} } as unknown as Dispatcher.ResponseData;
}

function policyRequest(req: Readonly<RequestOptions>): PolicyRequest {
  return { method: req.method ?? "GET", path: req.path ?? "/", header: headerLookup(req.headers as AnyHeaders) };
}

export class PolicyTraffic implements TrafficHooks {
  readonly runtimes: PolicyRuntimes;
  private readonly states = new Map<string, ServiceState>();
  // Per catalog instance object (the mirror keeps an unchanged instance's object from one change
  // to the next): its Endpoint, made once, and back. A change then costs work for what changed.
  private readonly endpointOf = new WeakMap<CatalogInstance, Endpoint>();
  private readonly instanceOf = new WeakMap<Endpoint, CatalogInstance>();
  /** What each subset balancer was last given: the same instances again need no setInstances. */
  private readonly placed = new WeakMap<ServiceBalancer, readonly CatalogInstance[]>();

  constructor(
    policies: PolicyMirror,
    defaults: GatewayDefaults,
    private readonly balancerOptions: BalancerOptionsInput,
    private readonly random: () => number,
    private readonly events: PolicyTrafficEvents,
    /** The host's own hooks, still called after the policy's. */
    private readonly user: TrafficHooks | undefined,
  ) {
    this.runtimes = new PolicyRuntimes(policies, defaults, random, (service) => {
      const st = this.states.get(service);
      if (st) this.rebuild(service, st);
    });
  }

  private state(service: string): ServiceState {
    let st = this.states.get(service);
    if (!st) {
      st = { rt: this.runtimes.get(service), instances: [], source: () => [], balancers: new Map(), active: false, redistributed: 0 };
      this.states.set(service, st);
      this.rebuild(service, st);
    }
    return st;
  }

  /** The service's instances changed (the gateway's catalog mirror). */
  setInstances(service: string, instances: readonly CatalogInstance[]): void {
    const st = this.state(service);
    st.instances = instances;
    st.rt.setEndpoints(instances.map((i) => this.endpoint(i)));
    this.place(st, nowMs());
  }

  /**
   * One instance changed. Without subsets the service's one balancer takes just that change (O(1))
   * and the whole list is read from `all` only when something needs it (a new policy); with
   * subsets the instance may move between them: the whole list is placed again.
   */
  updateInstance(service: string, change: InstanceChange, all: () => readonly CatalogInstance[]): void {
    const st = this.state(service);
    if (st.rt.resolved.subsets) return this.setInstances(service, all());
    st.instances = undefined;
    st.source = all;
    for (const b of st.balancers.values()) {
      b.updateInstance(change.id, change.after, nowMs());
      this.placed.delete(b);
    }
  }

  /** The service's instances, read again (with the policy runtime's endpoints) after single-instance changes. */
  private instancesOf(st: ServiceState): readonly CatalogInstance[] {
    if (st.instances === undefined) {
      st.instances = st.source();
      st.rt.setEndpoints(st.instances.map((i) => this.endpoint(i)));
    }
    return st.instances;
  }

  private endpoint(inst: CatalogInstance): Endpoint {
    let ep = this.endpointOf.get(inst);
    if (!ep) {
      ep = toEndpoint(inst);
      this.endpointOf.set(inst, ep);
      this.instanceOf.set(ep, inst);
    }
    return ep;
  }

  /**
   * A new policy: balancers per subset (stats kept per instance id where the balancer stays). The
   * runtime already re-partitioned the instances if the subsets changed (ServicePolicyRuntime.update).
   */
  private rebuild(service: string, st: ServiceState): void {
    // After single-instance changes the runtime partitioned stale endpoints: they are set again first.
    this.instancesOf(st);
    const r = st.rt.resolved;
    st.active = r.revision > 0;
    const names: (string | undefined)[] = r.subsets ? Object.keys(r.subsets) : [undefined];
    const next = new Map<string | undefined, ServiceBalancer>();
    for (const n of names) {
      const old = st.balancers.get(n);
      next.set(n, old && old.options.balancer === r.balancer ? old : new ServiceBalancer({ ...this.balancerOptions, balancer: r.balancer }, this.random));
    }
    st.balancers = next;
    this.place(st, nowMs());
    void service;
  }

  /** Gives each balancer its instances: the whole service's, or its subset's; unchanged ones are left alone. */
  private place(st: ServiceState, now: number): void {
    for (const [name, b] of st.balancers) {
      const list = name === undefined ? this.instancesOf(st) : st.rt.members(name).map((e) => this.instanceOf.get(e)!);
      const before = this.placed.get(b);
      if (before && before.length === list.length && before.every((inst, i) => inst === list[i])) continue;
      b.setInstances(list, now);
      this.placed.set(b, list);
    }
  }

  inForce(service: string): PolicyInForce & { liveSplit: ReturnType<ServicePolicyRuntime["shares"]>; counters: ServicePolicyRuntime["counters"] } {
    const st = this.state(service);
    const now = nowMs();
    const usable = (s: string): boolean => st.balancers.get(s)?.hasUsable(now) ?? false;
    return { ...this.runtimes.inForce(service), liveSplit: st.rt.shares(usable), counters: { ...st.rt.counters } };
  }

  /** The service's policy counters for the metrics (undefined before any request or instance of it). */
  counters(service: string): Readonly<Record<string, number>> | undefined {
    return this.states.get(service)?.rt.counters;
  }

  plan(service: string, req: Readonly<RequestOptions>, plan: RequestPlan): Promise<Dispatcher.ResponseData> | void {
    const st = this.state(service);
    if (st.active) {
      const r = st.rt.resolved;
      const now = nowMs();
      if (req.timeout === undefined) plan.tryTimeout = r.tryTimeoutMs;
      if (req.maxRetries === undefined) plan.maxRetries = r.maxRetries;
      if (callerDeadline(req.deadline, req.headers?.[DEADLINE_HEADER]) === undefined) {
        plan.deadlineMs = r.deadlineMs;
        plan.propagateDeadline = r.deadlineSet;
      }
      const preq = policyRequest(req);
      const admission = st.rt.admit(now);
      if (!admission.ok) {
        const fb = st.rt.fallback(preq, now);
        if (fb) return Promise.resolve(fallbackResponseData(fb));
        if (admission.reason === "throttled") throw new ThrottledError(service, st.rt.throttleState(now)?.rejectProbability ?? 1);
        throw new LocalRateLimitedError(service, r.rateLimit?.perSecond ?? 0, admission.retryAfterMs);
      }
      const usable = (s: string): boolean => st.balancers.get(s)?.hasUsable(now) ?? false;
      const rp = st.rt.plan(preq, usable);
      if (rp.hashKey !== undefined && req.hashKey === undefined) plan.hashKey = rp.hashKey;
      if (rp.redistributed) {
        st.redistributed++;
        this.events.redistributed(service, rp.subset, rp.via === "route" ? "route" : "split");
      }
      const order: (string | undefined)[] = r.subsets ? (rp.subset !== undefined ? [rp.subset, ...rp.spill] : [...rp.spill]) : [undefined];
      // Nothing usable anywhere: every subset in order, so panic inside them can still serve.
      if (r.subsets && order.length === 0) order.push(...Object.keys(r.subsets));
      plan.balancer = new SubsetPicker(st, order);
    }
    return this.user?.plan?.(service, req, plan);
  }

  onOutcome(service: string, endpoint: Endpoint, outcome: Outcome, response?: Dispatcher.ResponseData, request?: Readonly<RequestOptions>): void {
    const st = this.states.get(service);
    if (st?.active) {
      if (request && response && st.rt.resolved.fallback?.stale) this.keepForStale(st.rt, request, response);
      const ra = response?.headers["retry-after"];
      st.rt.onResult(nowMs(), endpoint.id, {
        kind: outcome.kind,
        statusCode: response?.statusCode,
        retryAfter: Array.isArray(ra) ? ra[0] : ra,
      });
    }
    this.user?.onOutcome?.(service, endpoint, outcome, response, request);
  }

  /**
   * Keeps a good answer for the stale fallback while the caller reads it: undici pushes each
   * chunk into the body stream, so a wrapped push sees them without changing how it flows.
   */
  private keepForStale(rt: ServicePolicyRuntime, request: Readonly<RequestOptions>, response: Dispatcher.ResponseData): void {
    const one = (name: string): string | undefined => {
      const v = response.headers[name];
      return Array.isArray(v) ? v[0] : v;
    };
    const length = one("content-length");
    const preq = policyRequest(request);
    const key = rt.staleKeyFor(preq, response.statusCode, length === undefined ? undefined : Number(length), one);
    if (key === undefined) return;
    const body = response.body as unknown as { push(chunk: unknown, encoding?: BufferEncoding): boolean };
    const push = body.push.bind(body);
    const chunks: Buffer[] = [];
    const headers: Record<string, string> = {};
    for (const k of ["content-type", "cache-control", "etag", "last-modified"]) {
      const v = one(k);
      if (v !== undefined) headers[k] = v;
    }
    body.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
      if (chunk === null) {
        rt.remember(key, response.statusCode, headers, Buffer.concat(chunks), nowMs());
        body.push = push;
      } else chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array));
      return push(chunk, encoding);
    };
  }

  onNoInstance(service: string, reasons: NoHealthyReasons, request?: Readonly<RequestOptions>): Promise<Dispatcher.ResponseData> | undefined {
    const fb = this.fallback(service, request);
    return fb ?? this.user?.onNoInstance?.(service, reasons, request);
  }

  onGiveUp(service: string, request: Readonly<RequestOptions>, failure: unknown): Promise<Dispatcher.ResponseData> | undefined {
    return this.fallback(service, request) ?? this.user?.onGiveUp?.(service, request, failure);
  }

  private fallback(service: string, request: Readonly<RequestOptions> | undefined): Promise<Dispatcher.ResponseData> | undefined {
    const st = this.states.get(service);
    if (!st?.active || !request) return undefined;
    const fb = st.rt.fallback(policyRequest(request), nowMs());
    return fb ? Promise.resolve(fallbackResponseData(fb)) : undefined;
  }

  close(): void {
    this.runtimes.close();
    this.states.clear();
  }
}
