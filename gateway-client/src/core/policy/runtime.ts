import type { Random } from "../balancers/balancer.js";
import type { Endpoint } from "../types.js";
import { AdaptiveThrottle, isAccepted } from "./adaptive-throttle.js";
import { affinityKey } from "./affinity.js";
import { StaleCache, staleKey, staticFallback, type FallbackResponse } from "./fallback.js";
import type { HeaderLookup } from "./headers.js";
import type { ResolvedPolicy } from "./resolve.js";
import { LoadSignals } from "./retry-after.js";
import { matchRoute } from "./routes.js";
import { SubsetSplitter } from "./split.js";
import { SubsetIndex } from "./subsets.js";
import { TokenBucket } from "./token-bucket.js";

/** What the policy needs to know of a request. */
export interface PolicyRequest {
  readonly method: string;
  /** Path with query, for the stale cache key. */
  readonly path: string;
  readonly header: HeaderLookup;
}

/** Whether a request may be sent at all (checked before picking). */
export type Admission =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: "rate-limited" | "throttled"; readonly retryAfterMs: number };

/** Where a request should go. */
export interface RoutePlan {
  /** The subset to pick in; undefined: the whole service (the policy has no subsets or split). */
  readonly subset: string | undefined;
  /** What chose it: a header route, the split, or nothing (no subsets). */
  readonly via: "route" | "split" | "none";
  /** True when the wanted subset had no usable instance and another one took its share. */
  readonly redistributed: boolean;
  /** Consistent-hashing key from the affinity (ring-hash), if the request carries one. */
  readonly hashKey: string | undefined;
  /** Other subsets, best first, a retry may move to once the chosen one has no other usable instance. */
  readonly spill: readonly string[];
  /** No subset of the policy has a usable instance: answer the fallback, or fail as today. */
  readonly nothingUsable: boolean;
}

/** What became of a sent try, as the policy needs it. */
export interface PolicyOutcome {
  readonly kind: "success" | "failure" | "cancelled";
  readonly statusCode?: number;
  /** The answer's Retry-After header, if any. */
  readonly retryAfter?: string;
}

const NO_PLAN: RoutePlan = Object.freeze({ subset: undefined, via: "none", redistributed: false, hashKey: undefined, spill: [], nothingUsable: false });

/**
 * The per-service policy state a request engine consults: admission (token bucket, then adaptive
 * throttling), the subset to pick in (routes, then the split), the affinity key, per-instance
 * Retry-After back-off, and the fallback answer. Pure and synchronous: the engine passes `now`
 * and what it knows of usability; it owns picking inside the subset (panic, zones, ejection).
 */
export class ServicePolicyRuntime {
  private resolvedValue: ResolvedPolicy;
  private splitter: SubsetSplitter | undefined;
  private index: SubsetIndex | undefined;
  private bucket: TokenBucket | undefined;
  private throttle: AdaptiveThrottle | undefined;
  private stale: StaleCache | undefined;
  private readonly signals = new LoadSignals();
  private endpoints: readonly Endpoint[] = [];
  /** Counters for gw.policy(), events and metrics. */
  readonly counters = { admitted: 0, rateLimited: 0, throttled: 0, redistributed: 0, routed: 0, fallbackStatic: 0, fallbackStale: 0, loadSignals: 0 };

  constructor(
    resolved: ResolvedPolicy,
    private readonly random: Random,
  ) {
    this.resolvedValue = resolved;
    this.build(resolved, undefined);
  }

  get resolved(): ResolvedPolicy {
    return this.resolvedValue;
  }

  /** A new policy (or gateway options): rebuilt, keeping counting state whose settings did not change. */
  update(resolved: ResolvedPolicy): void {
    const prev = this.resolvedValue;
    this.resolvedValue = resolved;
    this.build(resolved, prev);
  }

  private build(r: ResolvedPolicy, prev: ResolvedPolicy | undefined): void {
    const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
    this.splitter = r.split ? new SubsetSplitter(r.split, this.random) : undefined;
    // Same subsets (a canary moving its weights): the partition stands.
    if (!r.subsets) this.index = undefined;
    else if (!this.index || !prev || !same(prev.subsets, r.subsets)) {
      this.index = new SubsetIndex(r.subsets);
      this.index.update(this.endpoints);
    }
    if (!r.rateLimit) this.bucket = undefined;
    else if (!this.bucket || !prev || !same(prev.rateLimit, r.rateLimit)) this.bucket = new TokenBucket(r.rateLimit.perSecond, r.rateLimit.burst);
    if (!r.throttle) this.throttle = undefined;
    else if (!this.throttle || !prev || !same(prev.throttle, r.throttle)) this.throttle = new AdaptiveThrottle(r.throttle);
    const st = r.fallback?.stale;
    if (!st) this.stale = undefined;
    else if (!this.stale || !prev || !same(prev.fallback?.stale, st)) {
      this.stale = new StaleCache({ maxAgeMs: st.maxAge, maxEntries: st.maxEntries ?? 1000, maxBodyBytes: st.maxBodyBytes ?? 256 * 1024 });
    }
  }

  /** The service's instances changed (from the mirror): re-partitions them into subsets. */
  setEndpoints(endpoints: readonly Endpoint[]): void {
    this.endpoints = endpoints;
    this.index?.update(endpoints);
  }

  /** The instances of a subset (all of them for undefined). */
  members(subset: string | undefined): readonly Endpoint[] {
    return subset === undefined || !this.index ? this.endpoints : this.index.members(subset);
  }

  /** Before picking: may this request be sent? (Rate limit first: it is a cap; then adaptive throttling.) */
  admit(now: number): Admission {
    if (this.bucket && !this.bucket.take(now)) {
      this.counters.rateLimited++;
      return { ok: false, reason: "rate-limited", retryAfterMs: this.bucket.waitMs(now) };
    }
    if (this.throttle && this.throttle.rejectOrSend(now, this.random)) {
      this.counters.throttled++;
      return { ok: false, reason: "throttled", retryAfterMs: 0 };
    }
    this.counters.admitted++;
    return { ok: true };
  }

  /**
   * Chooses the subset for a request: the first matching route, else the split. `usable(subset)`
   * is the engine's verdict (a subset with at least one instance it would pick outside panic).
   */
  plan(req: PolicyRequest, usable: (subset: string) => boolean): RoutePlan {
    const r = this.resolvedValue;
    const hashKey = affinityKey(r.affinity, req.header);
    if (!r.subsets || (!r.split && !r.routes)) return hashKey === undefined ? NO_PLAN : { ...NO_PLAN, hashKey };
    const route = matchRoute(r.routes, req.header);
    let subset: string | undefined;
    let via: RoutePlan["via"] = "split";
    let redistributed = false;
    if (route && usable(route.subset)) {
      subset = route.subset;
      via = "route";
      this.counters.routed++;
    } else {
      if (route) redistributed = true; // the routed subset cannot serve: the split decides
      if (this.splitter) {
        const pick = this.splitter.pick(usable, hashKey);
        subset = pick.subset;
        redistributed ||= pick.redistributed;
      } else {
        subset = Object.keys(r.subsets).find(usable);
      }
    }
    if (redistributed) this.counters.redistributed++;
    const spill = this.spillOrder(subset, usable);
    if (subset === undefined) return { subset: undefined, via, redistributed, hashKey, spill, nothingUsable: spill.length === 0 };
    return { subset, via, redistributed, hashKey, spill, nothingUsable: false };
  }

  /** The split's other usable subsets, by weight, then the remaining named subsets. */
  private spillOrder(chosen: string | undefined, usable: (subset: string) => boolean): string[] {
    const r = this.resolvedValue;
    const ordered = [...(r.split ?? [])].sort((a, b) => b.weight - a.weight).map((e) => e.subset);
    for (const name of Object.keys(r.subsets ?? {})) if (!ordered.includes(name)) ordered.push(name);
    return ordered.filter((s) => s !== chosen && usable(s));
  }

  /** After each sent try: feeds adaptive throttling and per-instance Retry-After back-off. */
  onResult(now: number, endpointId: string, outcome: PolicyOutcome): void {
    if (this.throttle && outcome.kind !== "cancelled") this.throttle.completed(now, isAccepted(outcome));
    if (outcome.statusCode !== undefined && this.signals.note(endpointId, outcome.statusCode, outcome.retryAfter, now) !== undefined) this.counters.loadSignals++;
  }

  /** True while the instance asked (429/503 + Retry-After) not to get requests: leave it out when others can serve. */
  backingOff(endpointId: string, now: number): boolean {
    return this.signals.backingOff(endpointId, now);
  }

  /** Whether a good answer should be kept for the stale fallback (then call `remember` with its body). */
  staleKeyFor(req: PolicyRequest, status: number, contentLength?: number, responseHeader?: HeaderLookup): string | undefined {
    if (!this.stale) return undefined;
    const key = staleKey(req.method, req.path, req.header);
    if (key === undefined) return undefined;
    return this.stale.cacheable(status, responseHeader ?? (() => undefined), contentLength) ? key : undefined;
  }

  remember(key: string, status: number, headers: Readonly<Record<string, string>>, body: Uint8Array, now: number): void {
    this.stale?.put(key, status, headers, body, now);
  }

  /**
   * The answer when nothing can serve (nothing usable, every try failed, throttled, rate limited):
   * the last good answer of the same GET within maxAge, else the static one, else undefined (the
   * error stands, as without a policy).
   */
  fallback(req: PolicyRequest, now: number): FallbackResponse | undefined {
    if (this.stale) {
      const key = staleKey(req.method, req.path, req.header);
      const hit = key === undefined ? undefined : this.stale.get(key, now);
      if (hit) {
        this.counters.fallbackStale++;
        return hit;
      }
    }
    const s = staticFallback(this.resolvedValue.fallback);
    if (s) this.counters.fallbackStatic++;
    return s;
  }

  /** The split in force right now (for gw.policy() and the `split` event). */
  shares(usable: (subset: string) => boolean) {
    return this.splitter?.shares(usable) ?? [];
  }

  /** Throttle counts and probability now (for gw.policy()). */
  throttleState(now: number): { requests: number; accepts: number; rejectProbability: number } | undefined {
    if (!this.throttle) return undefined;
    return { ...this.throttle.counts(now), rejectProbability: this.throttle.rejectProbability(now) };
  }
}
