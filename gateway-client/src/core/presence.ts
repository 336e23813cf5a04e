// The registry's presence, judged without I/O: every judgement takes `now` from the caller
// (adapters/presence.ts feeds it the wall clock; tests an injected one).
//   - missing: no presence for `missFactor` intervals (the interval is the registry's own, as its
//     last presence said; until then the configured one),
//   - a new registry: another `<registryId>#<epoch>` than the one we followed, or, for the first
//     presence heard, a registry that may have started after we attached (see startedSinceAttach),
//   - degraded: what the registry's last presence says of its self-preservation mode.

export type StaleReason = "nats-unreachable" | "nats-disconnected" | "presence-lost";

/** What the registry's presence says while it is degraded (self-preservation). */
export interface RegistryDegraded {
  reason: string;
  since: number;
}

/** The parts of a presence message the judgement needs. */
export interface PresenceBeat {
  registryId: string;
  epoch: number;
  sentAt: number;
  intervalMs: number;
  degraded?: RegistryDegraded | null;
}

/** What one presence message changed. */
export interface BeatOutcome {
  /** `<registryId>#<epoch>` of the sender. */
  registry: string;
  /** Another registry than the one followed (or a first one that started since attach): resync. */
  newRegistry: boolean;
  /** The degraded mode turned on or off (not a mere update of its details). */
  degradedChanged: boolean;
  /** Presence had been missing and is back. */
  recovered: boolean;
}

/** Slack for timer granularity: the registry takes its epoch before it answers anything, and a presence late in transit only shortens the uptime seen (towards a resync). Kept small so a gateway attaching soon after a registry start does not refetch everything. */
const FIRST_PRESENCE_SLACK_MS = 250;

/** True when the registry behind `p` may have started after `attachedAt` (its uptime is shorter than our time since attach). */
export function startedSinceAttach(p: { epoch: number; sentAt: number }, attachedAt: number, now: number): boolean {
  return p.sentAt - p.epoch <= now - attachedAt + FIRST_PRESENCE_SLACK_MS;
}

/** True when presence last heard at `lastAt` is overdue at `now` (more than `missFactor` intervals ago). */
export function presenceOverdue(lastAt: number, intervalMs: number, missFactor: number, now: number): boolean {
  return now - lastAt > missFactor * intervalMs;
}

/** How often to look for overdue presence: half an interval, within [50, 500] ms. */
export function presenceCheckEveryMs(intervalMs: number): number {
  return Math.max(50, Math.min(500, Math.floor(intervalMs / 2)));
}

/** Why a mirror is stale, most fundamental cause first (undefined: fresh). */
export function staleReasonOf(attached: boolean, natsConnected: boolean, presenceMissing: boolean): StaleReason | undefined {
  if (!attached) return "nats-unreachable";
  if (!natsConnected) return "nats-disconnected";
  return presenceMissing ? "presence-lost" : undefined;
}

/** Presence of the registry a mirror follows: last heard, interval, which registry, degraded mode. */
export class PresenceTracker {
  private lastAt = 0;
  /** When the mirror attached (the caller's clock): the first presence is judged against it. */
  private attachedAt = 0;
  private registry: string | null = null;
  private missingValue = false;
  private degradedValue: RegistryDegraded | null = null;
  private interval: number;

  constructor(
    private readonly missFactor: number,
    intervalMs: number,
  ) {
    this.interval = intervalMs;
  }

  get missing(): boolean {
    return this.missingValue;
  }

  get degraded(): RegistryDegraded | null {
    return this.degradedValue;
  }

  /** The registry's presence interval as last heard (the configured one until then). */
  get intervalMs(): number {
    return this.interval;
  }

  /** Attached to a connection at `now`: a full grace period before presence counts as missing. */
  attach(now: number): void {
    this.attachedAt = now;
    this.restartGrace(now);
  }

  /** Presence may have been missed for reasons of our own (a reconnect): a fresh grace period. */
  restartGrace(now: number): void {
    this.lastAt = now;
    this.missingValue = false;
  }

  onBeat(p: PresenceBeat, now: number): BeatOutcome {
    this.lastAt = now;
    this.interval = p.intervalMs;
    const who = `${p.registryId}#${p.epoch}`;
    // The first presence seen says nothing of the registry that answered our snapshots, unless that
    // registry was already up when we attached: one that started since (a restart quicker than the
    // presence-lost window, before we ever heard the old one) never sent the changes we missed.
    // Its uptime and our time since attach are each read on one clock, so no skew enters.
    const newRegistry = this.registry === null ? startedSinceAttach(p, this.attachedAt, now) : this.registry !== who;
    this.registry = who;
    const degraded = p.degraded ?? null;
    const degradedChanged = (degraded === null) !== (this.degradedValue === null);
    this.degradedValue = degraded;
    const recovered = this.missingValue;
    this.missingValue = false;
    return { registry: who, newRegistry, degradedChanged, recovered };
  }

  /** Judges presence at `now`; true when `missing` changed. */
  check(now: number): boolean {
    const missing = presenceOverdue(this.lastAt, this.interval, this.missFactor, now);
    if (missing === this.missingValue) return false;
    this.missingValue = missing;
    return true;
  }
}
