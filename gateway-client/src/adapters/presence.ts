// Listens to the registry's presence (PRESENCE_SUBJECT) for a catalog follower and checks it on a
// timer; the judgement (overdue, new registry, degraded) is core/presence.ts. The follower owns the
// NATS status and tells this watcher when the connection drops or comes back: presence is not
// judged while disconnected, and a reconnect starts a fresh grace period.
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { PRESENCE_SUBJECT, PresenceMessage, decode } from "roster-schemas";
import { PresenceTracker, presenceCheckEveryMs, type RegistryDegraded } from "../core/presence.js";
import type { Logger } from "./logger.js";

export interface PresenceHooks {
  /** Presence went missing or came back (read `missing`). */
  missingChanged(): void;
  /** Another registry (or epoch) speaks: what the follower holds may lack its changes. */
  newRegistry(registry: string): void;
  /** The registry entered (info) or left (null) its degraded mode. */
  degradedChanged(info: RegistryDegraded | null): void;
  /** A presence message that did not decode. */
  drop(kind: string, reason: string, detail?: string): void;
}

export interface PresenceWatcherOptions {
  missFactor: number;
  /** Presence interval assumed until the first presence message. */
  intervalMs: number;
  /** Wall clock (defaults to Date.now). */
  now?: () => number;
}

export class PresenceWatcher {
  private readonly tracker: PresenceTracker;
  private readonly now: () => number;
  private sub: Subscription | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;
  private connected = false;
  private closed = false;

  constructor(
    options: PresenceWatcherOptions,
    private readonly log: Logger,
    private readonly hooks: PresenceHooks,
  ) {
    this.tracker = new PresenceTracker(options.missFactor, options.intervalMs);
    this.now = options.now ?? Date.now;
  }

  get missing(): boolean {
    return this.tracker.missing;
  }

  get degraded(): RegistryDegraded | null {
    return this.tracker.degraded;
  }

  /** Starts listening on `nc`; `connected`: whether it is up now. */
  attach(nc: NatsConnection, connected: boolean): void {
    if (this.closed) return;
    this.connected = connected;
    this.tracker.attach(this.now());
    this.sub = nc.subscribe(PRESENCE_SUBJECT, { callback: (err, msg) => { if (!err) this.onMessage(msg); } });
    this.timer = setInterval(() => this.check(), presenceCheckEveryMs(this.tracker.intervalMs));
    this.timer.unref();
  }

  disconnected(): void {
    this.connected = false;
  }

  /** Back on NATS: presence may have been missed while down, so a fresh grace period (no hook fires). */
  reconnected(): void {
    this.connected = true;
    this.tracker.restartGrace(this.now());
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.sub?.unsubscribe();
  }

  private onMessage(msg: Msg): void {
    if (this.closed) return;
    const r = decode(PresenceMessage, msg.data);
    if (!r.ok) return this.hooks.drop("presence", r.reason, r.error);
    const p = r.value;
    const out = this.tracker.onBeat(p, this.now());
    if (out.newRegistry) this.hooks.newRegistry(out.registry);
    if (out.degradedChanged) {
      if (p.degraded) this.log.warn({ registry: out.registry, ...p.degraded }, "registry is degraded: statuses may reflect its own network");
      else this.log.info({ registry: out.registry }, "registry is no longer degraded");
      this.hooks.degradedChanged(p.degraded ?? null);
    }
    if (out.recovered) this.hooks.missingChanged();
  }

  private check(): void {
    if (this.closed || !this.connected) return;
    if (this.tracker.check(this.now())) this.hooks.missingChanged();
  }
}
