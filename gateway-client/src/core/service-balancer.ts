import type { CatalogInstance } from "roster-schemas";
import type { Balancer, Candidate, LoadSource, Random, RingHashOptions } from "./balancers/index.js";
import { createBalancer } from "./balancers/index.js";
import type { BreakerOptions } from "./breaker.js";
import { CircuitBreaker } from "./breaker.js";
import { hashUnit } from "./hash.js";
import { PeakEwma } from "./peak-ewma.js";
import type {
  BalancerName,
  Endpoint,
  EndpointStats,
  NoHealthyReasons,
  Outcome,
  PickContext,
  PickResult,
} from "./types.js";

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

export interface OutlierOptions {
  /** Consecutive failures that eject an endpoint; 0 disables this trigger (refused still ejects). */
  readonly consecutiveFailures: number;
  /** First ejection lasts this long; the k-th lasts base × k ... */
  readonly baseEjectionMs: number;
  /** ... capped at this. */
  readonly maxEjectionMs: number;
  /** At most max(1, floor(known × share)) endpoints are ejected at once; 0 disables ejection. */
  readonly maxEjectedShare: number;
  /**
   * End an ejection (and close the breaker) when the catalog reports the endpoint serving again
   * after it was critical or draining: the agent's health check is evidence of recovery. Envoy's
   * `successful_active_health_check_uneject_host`, on by default there too. Without it an
   * endpoint restarted after a crash sits out the rest of its ejection, and with few endpoints
   * that can tip the service into panic.
   */
  readonly unejectOnHealthy: boolean;
}

export interface BalancerOptions {
  readonly balancer: BalancerName;
  /** The caller's zone; unset disables zone-aware routing. */
  readonly zone?: string | undefined;
  readonly locality: {
    /**
     * The local zone keeps all the traffic while its usable weight is at least this share
     * of its known weight; below, it keeps (usable share / minHealthyShare) of the traffic
     * and the rest spills to the other zones. 0.7 ≈ Envoy's overprovisioning factor 1.4.
     */
    readonly minHealthyShare: number;
  };
  /** Below this share of usable endpoints (of the non-draining ones), balance across all of them. 0 disables. */
  readonly panicThreshold: number;
  /** Weight multiplier of an endpoint whose status is `warning` (1 = no penalty). */
  readonly warningWeight: number;
  /** A new or recovered endpoint's weight ramps linearly from minShare to 1 over windowMs (0 disables). */
  readonly slowStart: { readonly windowMs: number; readonly minShare: number };
  readonly outlier: OutlierOptions;
  readonly breaker: BreakerOptions;
  /**
   * Peak-EWMA latency estimate: `decayMs` is its time constant; a failed try counts as at least
   * `failurePenaltyMs` of latency, so an endpoint that fails fast (503s, refused connections) is
   * never the cheapest choice — otherwise latency-aware balancing would pour traffic into it.
   */
  readonly ewma: { readonly decayMs: number; readonly failurePenaltyMs: number };
  readonly ringHash: RingHashOptions;
}

/** Any subset of the options; the rest come from DEFAULT_BALANCER_OPTIONS. */
export interface BalancerOptionsInput {
  readonly balancer?: BalancerName;
  readonly zone?: string | undefined;
  readonly locality?: Partial<BalancerOptions["locality"]>;
  readonly panicThreshold?: number;
  readonly warningWeight?: number;
  readonly slowStart?: Partial<BalancerOptions["slowStart"]>;
  readonly outlier?: Partial<OutlierOptions>;
  readonly breaker?: Partial<BreakerOptions>;
  readonly ewma?: Partial<BalancerOptions["ewma"]>;
  readonly ringHash?: Partial<RingHashOptions>;
}

export const DEFAULT_BALANCER_OPTIONS: BalancerOptions = Object.freeze({
  balancer: "p2c-peak-ewma",
  zone: undefined,
  locality: Object.freeze({ minHealthyShare: 0.7 }),
  panicThreshold: 0.5,
  warningWeight: 0.5,
  slowStart: Object.freeze({ windowMs: 30_000, minShare: 0.1 }),
  outlier: Object.freeze({ consecutiveFailures: 5, baseEjectionMs: 30_000, maxEjectionMs: 300_000, maxEjectedShare: 0.5, unejectOnHealthy: true }),
  breaker: Object.freeze({ failureThreshold: 5, openMs: 10_000, halfOpenProbes: 3 }),
  ewma: Object.freeze({ decayMs: 10_000, failurePenaltyMs: 100 }),
  ringHash: Object.freeze({ virtualNodes: 160, maxRingSize: 1_048_576 }),
}) as BalancerOptions;

/** Fills defaults and checks ranges (RangeError naming the bad field). */
export function resolveBalancerOptions(input: BalancerOptionsInput = {}): BalancerOptions {
  const d = DEFAULT_BALANCER_OPTIONS;
  const o: BalancerOptions = {
    balancer: input.balancer ?? d.balancer,
    zone: input.zone ?? d.zone,
    locality: { ...d.locality, ...input.locality },
    panicThreshold: input.panicThreshold ?? d.panicThreshold,
    warningWeight: input.warningWeight ?? d.warningWeight,
    slowStart: { ...d.slowStart, ...input.slowStart },
    outlier: { ...d.outlier, ...input.outlier },
    breaker: { ...d.breaker, ...input.breaker },
    ewma: { ...d.ewma, ...input.ewma },
    ringHash: { ...d.ringHash, ...input.ringHash },
  };
  const check = (path: string, v: number, min: number, max = Infinity): void => {
    if (!Number.isFinite(v) || v < min || v > max) throw new RangeError(`${path}: expected a number in [${min}, ${max}], got ${v}`);
  };
  check("locality.minHealthyShare", o.locality.minHealthyShare, 0, 1);
  check("panicThreshold", o.panicThreshold, 0, 1);
  check("warningWeight", o.warningWeight, 0.001, 1);
  check("slowStart.windowMs", o.slowStart.windowMs, 0);
  check("slowStart.minShare", o.slowStart.minShare, 0.001, 1);
  check("outlier.consecutiveFailures", o.outlier.consecutiveFailures, 0);
  check("outlier.baseEjectionMs", o.outlier.baseEjectionMs, 0);
  check("outlier.maxEjectionMs", o.outlier.maxEjectionMs, o.outlier.baseEjectionMs);
  check("outlier.maxEjectedShare", o.outlier.maxEjectedShare, 0, 1);
  check("breaker.failureThreshold", o.breaker.failureThreshold, 0);
  check("breaker.openMs", o.breaker.openMs, 0);
  check("breaker.halfOpenProbes", o.breaker.halfOpenProbes, 1);
  check("ewma.decayMs", o.ewma.decayMs, 0);
  check("ewma.failurePenaltyMs", o.ewma.failurePenaltyMs, 0);
  check("ringHash.virtualNodes", o.ringHash.virtualNodes, 1);
  check("ringHash.maxRingSize", o.ringHash.maxRingSize, 1, 2 ** 24);
  return o;
}

/** The balancer's view of a catalog instance. */
export function toEndpoint(inst: CatalogInstance): Endpoint {
  return {
    id: inst.id,
    service: inst.service,
    address: inst.address,
    port: inst.port,
    zone: inst.zone,
    weight: inst.weight > 0 ? inst.weight : 1,
    status: inst.status,
    tags: inst.tags,
    meta: inst.meta,
  };
}

// ---------------------------------------------------------------------------
// Per-endpoint state
// ---------------------------------------------------------------------------

/** Slow start moves in this many steps, so candidate sets are rebuilt a bounded number of times. */
const SLOW_START_STEPS = 20;

class EndpointState implements LoadSource {
  inFlight = 0;
  consecutiveFailures = 0;
  ejections = 0;
  ejectedUntil = 0;
  /** End of the last ejection: every baseEjectionMs in service after it forgives one ejection. */
  lastEjectionEnd = 0;
  /** Start of the slow-start ramp, or undefined when at full weight. */
  slowStartAt: number | undefined;
  requests = 0;
  successes = 0;
  failures = 0;
  readonly ewma: PeakEwma;
  readonly breaker: CircuitBreaker;

  constructor(
    public endpoint: Endpoint,
    options: BalancerOptions,
  ) {
    this.ewma = new PeakEwma(options.ewma.decayMs);
    this.breaker = new CircuitBreaker(options.breaker);
  }

  ewmaMs(now: number): number | undefined {
    return this.ewma.get(now);
  }

  isEjected(now: number): boolean {
    return this.ejectedUntil > now;
  }
}

function servesByStatus(status: Endpoint["status"]): boolean {
  return status === "passing" || status === "warning";
}

// ---------------------------------------------------------------------------
// The facade
// ---------------------------------------------------------------------------

interface View {
  /** Candidates of the preferred group (local zone, or everything). */
  readonly local: readonly Candidate[];
  /** Candidates in other zones (zone-aware routing only). */
  readonly remote: readonly Candidate[];
  /** Share of picks that go to `local` when both groups are non-empty. */
  readonly localFraction: number;
  readonly panic: boolean;
  readonly reasons: Omit<NoHealthyReasons, "excluded">;
  /** The view must be rebuilt at or after this time (ejection end, breaker, slow-start step). */
  readonly validUntil: number;
}

/**
 * One per service: the catalog's instances of that service, their load and health as the
 * client sees them, and the pick pipeline. Pure: time is passed in, randomness injected.
 *
 * Pick pipeline (the reasoning is in gateway-client/README.md, "How a pick is made"):
 * 1. usable = status passing or warning (warning at `warningWeight`), not ejected by the
 *    outlier detector, breaker closed or half-open with a free probe slot. `draining`
 *    and `critical` never get new requests (outside panic, critical; never, draining).
 * 2. panic: if usable / non-draining < panicThreshold, every non-draining endpoint is a
 *    candidate (Envoy's panic mode) and the result says `panic: true`.
 * 3. locality: with `zone` set, the local zone takes min(1, localUsableShare /
 *    minHealthyShare) of the picks and the rest spill to usable endpoints in other zones.
 * 4. exclude: endpoints already tried are skipped when another candidate exists.
 * 5. the configured balancer chooses.
 *
 * The candidate sets are cached and rebuilt only when something that changes them
 * happens (catalog, ejection, breaker transition, slow-start step), so a pick costs the
 * balancer's own O(1) or O(log n).
 */
export class ServiceBalancer {
  readonly options: BalancerOptions;
  private readonly random: Random;
  private readonly states = new Map<string, EndpointState>();
  /** The endpoints as an array, made when read after a change. */
  private endpointList: readonly Endpoint[] | undefined = [];
  /** Endpoints whose status serves (passing, warning): whether a new one ramps up. */
  private serving = 0;
  private readonly localBalancer: Balancer;
  private readonly remoteBalancer: Balancer;
  private view: View | undefined;
  private lastPanic = false;
  private lastNow = 0;
  /** Ejections since this balancer was made (monotonic, unlike the per-endpoint count that forgives). */
  ejectionsTotal = 0;

  constructor(options: BalancerOptionsInput = {}, random: Random = Math.random) {
    this.options = resolveBalancerOptions(options);
    this.random = random;
    this.localBalancer = createBalancer(this.options.balancer, this.options.ringHash, random);
    this.remoteBalancer = createBalancer(this.options.balancer, this.options.ringHash, random);
  }

  /** The known endpoints (every status), in catalog order. */
  get endpoints(): readonly Endpoint[] {
    return (this.endpointList ??= Array.from(this.states.values(), (st) => st.endpoint));
  }

  /** Whether the last pick was made in panic mode. */
  get panic(): boolean {
    return this.lastPanic;
  }

  /**
   * Replace the set of instances. Idempotent; endpoints whose id remains keep their
   * statistics (in-flight, latency, ejection, breaker). An endpoint that appears, or
   * comes back from critical/draining, starts a slow-start ramp if some other endpoint
   * was already serving (ramping the whole set at once would change nothing).
   */
  setInstances(instances: readonly CatalogInstance[], now: number): void {
    this.touch(now);
    const rampable = this.serving > 0 && this.options.slowStart.windowMs > 0;
    const next = new Map<string, EndpointState>();
    for (const inst of instances) {
      const endpoint = toEndpoint(inst);
      next.set(endpoint.id, this.upsert(next.get(endpoint.id) ?? this.states.get(endpoint.id), endpoint, rampable, now));
    }
    this.states.clear();
    this.serving = 0;
    for (const [id, st] of next) {
      this.states.set(id, st);
      if (servesByStatus(st.endpoint.status)) this.serving++;
    }
    this.endpointList = undefined;
    this.view = undefined;
  }

  /**
   * One instance changed: `inst` added or updated (its own id counts), or (undefined) the
   * instance `id` removed.
   * Leaves the balancer exactly as `setInstances` given the whole list with that one change would
   * (same slow start, un-ejection, statistics kept, catalog order: an update keeps its place, an
   * addition goes last, as in the mirror's map), in O(1): a health flip at 2,000 instances does
   * not rebuild 2,000 endpoints. The endpoint list and candidate sets are rebuilt when next read.
   */
  updateInstance(id: string, inst: CatalogInstance | undefined, now: number): void {
    this.touch(now);
    const existing = this.states.get(inst?.id ?? id);
    if (inst === undefined) {
      if (!existing) return;
      if (servesByStatus(existing.endpoint.status)) this.serving--;
      this.states.delete(id);
    } else {
      const rampable = this.serving > 0 && this.options.slowStart.windowMs > 0;
      const endpoint = toEndpoint(inst);
      const wasServing = existing !== undefined && servesByStatus(existing.endpoint.status);
      this.states.set(endpoint.id, this.upsert(existing, endpoint, rampable, now));
      this.serving += Number(servesByStatus(endpoint.status)) - Number(wasServing);
    }
    this.endpointList = undefined;
    this.view = undefined;
  }

  /**
   * An endpoint's state with its new catalog entry: the existing state (statistics kept) or a new
   * one; one that starts serving ramps up (slow start, when others serve) and is un-ejected when
   * configured so. The one place `setInstances` and `updateInstance` decide this.
   */
  private upsert(existing: EndpointState | undefined, endpoint: Endpoint, rampable: boolean, now: number): EndpointState {
    const serves = servesByStatus(endpoint.status);
    if (!existing) {
      const st = new EndpointState(endpoint, this.options);
      if (serves && rampable) st.slowStartAt = now;
      return st;
    }
    const wasServing = servesByStatus(existing.endpoint.status);
    existing.endpoint = endpoint;
    if (!wasServing && serves) {
      if (rampable) existing.slowStartAt = now;
      if (this.options.outlier.unejectOnHealthy) this.uneject(existing, now);
    }
    return existing;
  }

  pick(ctx: PickContext): PickResult {
    const now = ctx.now;
    this.touch(now);
    const view = this.currentView(now);
    this.lastPanic = view.panic;
    const exclude = ctx.exclude;
    const excluded = exclude && exclude.size > 0 ? exclude : undefined;
    if (view.local.length === 0 && view.remote.length === 0) {
      let excludedKnown = 0;
      if (excluded) for (const id of excluded) if (this.states.has(id)) excludedKnown++;
      return { ok: false, reasons: { ...view.reasons, excluded: excludedKnown } };
    }
    const bctx = { now, hashKey: ctx.hashKey };
    let first: Balancer = this.localBalancer;
    let second: Balancer | undefined;
    if (view.remote.length > 0) {
      if (view.local.length === 0) first = this.remoteBalancer;
      else {
        // Ring hash: the spill decision follows the key too, so a key keeps its endpoint.
        const u = ctx.hashKey !== undefined && this.options.balancer === "ring-hash" ? hashUnit(ctx.hashKey) : this.random();
        if (u < view.localFraction) second = this.remoteBalancer;
        else {
          first = this.remoteBalancer;
          second = this.localBalancer;
        }
      }
    }
    const allowed = excluded ? (c: Candidate): boolean => !excluded.has(c.endpoint.id) : undefined;
    const chosen =
      first.pick(bctx, allowed) ?? (allowed && second?.pick(bctx, allowed)) ?? (allowed ? first.pick(bctx) : undefined);
    if (!chosen) {
      // Unreachable with non-empty groups; kept as a safe answer rather than a throw.
      return { ok: false, reasons: { ...view.reasons, excluded: excluded?.size ?? 0 } };
    }
    return { ok: true, endpoint: chosen.endpoint, panic: view.panic };
  }

  /** True when a pick now would find a usable endpoint outside panic (a policy's subset can serve). */
  hasUsable(now: number): boolean {
    this.touch(now);
    const view = this.currentView(now);
    return !view.panic && view.local.length + view.remote.length > 0;
  }

  /** A request to this endpoint starts (in-flight + 1). */
  onStart(endpointId: string, now: number): void {
    this.touch(now);
    const st = this.states.get(endpointId);
    if (!st) return;
    st.inFlight++;
    st.requests++;
    if (st.breaker.onStart(now)) this.view = undefined;
  }

  /** A request to this endpoint ended (in-flight - 1) with this outcome. */
  onResult(endpointId: string, outcome: Outcome, now: number): void {
    this.touch(now);
    const st = this.states.get(endpointId);
    if (!st) return;
    st.inFlight = Math.max(0, st.inFlight - 1);
    switch (outcome.kind) {
      case "success":
        st.successes++;
        st.consecutiveFailures = 0;
        st.ewma.observe(outcome.latencyMs, now);
        if (st.breaker.onSuccess(now)) this.view = undefined;
        return;
      case "cancelled":
        st.ewma.observeAtLeast(outcome.latencyMs, now);
        if (st.breaker.onCancel(now)) this.view = undefined;
        return;
      case "failure": {
        st.failures++;
        st.ewma.observe(Math.max(outcome.latencyMs, this.options.ewma.failurePenaltyMs), now);
        if (st.breaker.onFailure(now)) this.view = undefined;
        if (st.isEjected(now)) return; // late results of requests sent before the ejection
        st.consecutiveFailures++;
        const threshold = this.options.outlier.consecutiveFailures;
        if (outcome.reason === "refused" || (threshold > 0 && st.consecutiveFailures >= threshold)) {
          if (this.tryEject(st, now)) this.view = undefined;
        }
        return;
      }
    }
  }

  /** Per-endpoint bookkeeping, decayed to `now` (default: the latest time seen). */
  stats(now: number = this.lastNow): EndpointStats[] {
    const out: EndpointStats[] = [];
    for (const st of this.states.values()) {
      const e = st.endpoint;
      const ramp = this.slowStartFactor(st, now);
      out.push({
        id: e.id,
        zone: e.zone,
        status: e.status,
        weight: e.weight,
        effectiveWeight: this.effectiveWeight(st, ramp.factor),
        inFlight: st.inFlight,
        ewmaMs: st.ewma.get(now),
        ejectedUntil: st.isEjected(now) ? st.ejectedUntil : 0,
        ejections: st.ejections,
        consecutiveFailures: st.consecutiveFailures,
        breaker: st.breaker.state(now),
        requests: st.requests,
        successes: st.successes,
        failures: st.failures,
        slowStart: ramp.factor < 1,
      });
    }
    return out;
  }

  /** Endpoints ejected at `now`. */
  ejectedCount(now: number): number {
    let n = 0;
    for (const st of this.states.values()) if (st.isEjected(now)) n++;
    return n;
  }

  /** Most endpoints the outlier detector may hold ejected at once. */
  maxEjected(): number {
    const share = this.options.outlier.maxEjectedShare;
    if (share <= 0) return 0;
    return Math.max(1, Math.floor(this.states.size * share));
  }

  // -------------------------------------------------------------------------

  private touch(now: number): void {
    if (now > this.lastNow) this.lastNow = now;
  }

  /** Ends an ejection early and closes the breaker (the catalog saw the endpoint recover). */
  private uneject(st: EndpointState, now: number): void {
    if (st.isEjected(now)) {
      st.ejectedUntil = now;
      st.lastEjectionEnd = now;
    }
    st.consecutiveFailures = 0;
    st.breaker.reset();
  }

  private tryEject(st: EndpointState, now: number): boolean {
    const o = this.options.outlier;
    if (this.ejectedCount(now) >= this.maxEjected()) return false; // cap: stays in service
    // Forgiveness: each baseEjectionMs served since the last ejection ended cancels one.
    if (st.ejections > 0 && o.baseEjectionMs > 0 && now > st.lastEjectionEnd) {
      st.ejections = Math.max(0, st.ejections - Math.floor((now - st.lastEjectionEnd) / o.baseEjectionMs));
    }
    st.ejections++;
    this.ejectionsTotal++;
    const duration = Math.min(o.baseEjectionMs * st.ejections, o.maxEjectionMs);
    st.ejectedUntil = now + duration;
    st.lastEjectionEnd = st.ejectedUntil;
    st.consecutiveFailures = 0;
    return duration > 0;
  }

  private slowStartFactor(st: EndpointState, now: number): { factor: number; nextChange: number } {
    const { windowMs, minShare } = this.options.slowStart;
    if (st.slowStartAt === undefined || windowMs <= 0) return { factor: 1, nextChange: Infinity };
    const elapsed = Math.max(0, now - st.slowStartAt);
    if (elapsed >= windowMs) return { factor: 1, nextChange: Infinity };
    const step = windowMs / SLOW_START_STEPS;
    const k = Math.floor(elapsed / step);
    return { factor: minShare + ((1 - minShare) * (k * step)) / windowMs, nextChange: st.slowStartAt + (k + 1) * step };
  }

  private effectiveWeight(st: EndpointState, rampFactor: number): number {
    const status = st.endpoint.status === "warning" ? this.options.warningWeight : 1;
    return st.endpoint.weight * status * rampFactor;
  }

  private currentView(now: number): View {
    if (this.view && now < this.view.validUntil) return this.view;
    const view = this.buildView(now);
    this.view = view;
    this.localBalancer.update(view.local);
    this.remoteBalancer.update(view.remote);
    return view;
  }

  private buildView(now: number): View {
    const zone = this.options.zone;
    let known = 0;
    let draining = 0;
    let critical = 0;
    let ejected = 0;
    let circuitOpen = 0;
    let inOtherZones = 0;
    let validUntil = Infinity;
    const nonDraining: EndpointState[] = [];
    const usable: Candidate[] = [];
    let localKnownWeight = 0;
    let localUsableWeight = 0;

    for (const st of this.states.values()) {
      known++;
      const e = st.endpoint;
      const isLocal = zone !== undefined && e.zone === zone;
      if (zone !== undefined && !isLocal) inOtherZones++;
      if (e.status === "draining") {
        draining++;
        continue;
      }
      nonDraining.push(st);
      if (isLocal) localKnownWeight += e.weight;
      if (st.isEjected(now)) validUntil = Math.min(validUntil, st.ejectedUntil);
      const breakerChange = st.breaker.nextChangeAt();
      if (breakerChange !== undefined && breakerChange > now) validUntil = Math.min(validUntil, breakerChange);
      if (e.status === "critical") {
        critical++;
        continue;
      }
      if (st.isEjected(now)) {
        ejected++;
        continue;
      }
      if (!st.breaker.allows(now)) {
        circuitOpen++;
        continue;
      }
      const ramp = this.slowStartFactor(st, now);
      if (ramp.factor >= 1) st.slowStartAt = undefined;
      validUntil = Math.min(validUntil, ramp.nextChange);
      usable.push({ endpoint: e, weight: this.effectiveWeight(st, ramp.factor), load: st });
      if (isLocal) localUsableWeight += e.weight;
    }

    const reasons = { known, ejected, circuitOpen, draining, critical, inOtherZones };
    const threshold = this.options.panicThreshold;
    const panic = threshold > 0 && nonDraining.length > 0 && usable.length / nonDraining.length < threshold;
    if (panic) {
      const all = nonDraining.map((st) => ({ endpoint: st.endpoint, weight: this.effectiveWeight(st, 1), load: st }));
      return { local: all, remote: [], localFraction: 1, panic, reasons, validUntil };
    }
    if (zone === undefined) return { local: usable, remote: [], localFraction: 1, panic, reasons, validUntil };

    const local = usable.filter((c) => c.endpoint.zone === zone);
    const remote = usable.filter((c) => c.endpoint.zone !== zone);
    const share = localKnownWeight > 0 ? localUsableWeight / localKnownWeight : 0;
    const min = this.options.locality.minHealthyShare;
    const localFraction = local.length === 0 ? 0 : remote.length === 0 || min <= 0 ? 1 : Math.min(1, share / min);
    return { local, remote, localFraction, panic, reasons, validUntil };
  }
}
