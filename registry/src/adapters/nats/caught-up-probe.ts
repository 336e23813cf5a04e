import { createInbox, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { randomBytes } from "node:crypto";
import { CaughtUpClock } from "../../core/caught-up.js";

export interface CaughtUpProbeOptions {
  /** The connections agents' messages arrive on (the main one, and the bulk one when configured). */
  paths: Array<{ name: string; nc: NatsConnection }>;
  /** The configured inbox prefix (per-user permissions allow the registry its own inboxes only). */
  inboxPrefix?: string;
  now: () => number;
  logger: Logger;
}

/**
 * Publishes a probe to itself on every connection agents' messages arrive on and tells the
 * caught-up clock (core/caught-up.ts) when it comes back: silence is judged up to the send time of
 * the newest probe back, i.e. against what the registry could read, not against its own lag.
 *
 * The probe goes to an inbox of this registry (`_INBOX.<user>.…`: with the shipped permissions only
 * the registry may publish there) and carries a random token this process alone knows; anything
 * else arriving there is ignored. If the probe cannot work (its subscription refused), silence is
 * judged at the processing clock, as before, and that is logged.
 */
export class CaughtUpProbe {
  private readonly clock: CaughtUpClock;
  private readonly subs: Subscription[] = [];
  private readonly paths: Array<{ name: string; nc: NatsConnection; inbox: string }>;
  private readonly opts: CaughtUpProbeOptions;
  private broken = false;

  constructor(opts: CaughtUpProbeOptions) {
    this.opts = opts;
    this.clock = new CaughtUpClock({ paths: opts.paths.map((p) => p.name) });
    this.paths = opts.paths.map((p) => ({ ...p, inbox: createInbox(opts.inboxPrefix) }));
    const decoder = new TextDecoder();
    const refused = (path: string, err: unknown) => {
      if (!this.broken) opts.logger.error({ err: String(err), path }, "caught-up probe refused: silence is judged at the processing clock");
      this.broken = true;
    };
    for (const p of this.paths) {
      // A publish refused by permissions reaches only the connection's status stream.
      void (async () => {
        for await (const s of p.nc.status()) {
          if (s.type !== "error") continue;
          const e = s.error as { operation?: string; subject?: string } | undefined;
          if (e?.operation === "publish" && e.subject === p.inbox) refused(p.name, s.error);
        }
      })().catch(() => undefined);
      this.subs.push(
        p.nc.subscribe(p.inbox, {
          callback: (err, m) => {
            if (err) {
              refused(p.name, err);
              return;
            }
            if (m.data.length <= 64) this.clock.returned(p.name, decoder.decode(m.data));
          },
        }),
      );
    }
  }

  /** Sends one probe per path (each registry tick). */
  probe(): void {
    const at = this.opts.now();
    for (const p of this.paths) {
      const token = randomBytes(12).toString("base64url");
      try {
        p.nc.publish(p.inbox, token);
        this.clock.sent(p.name, token, at);
      } catch {
        // Disconnected: the probe is sent again at the next tick.
      }
    }
  }

  /** The time silence may be judged at (null: not caught up yet); the processing clock if the probe is broken. */
  heardUpTo(): number | null {
    const now = this.opts.now();
    return this.broken ? now : this.clock.judgeAt(now);
  }

  /** How far behind the processing clock the caught-up clock is (ms; null before the first probe came back). */
  lagMs(): number | null {
    const c = this.clock.caughtUpTo();
    return c === null ? null : Math.max(0, this.opts.now() - c);
  }

  stop(): void {
    for (const s of this.subs) s.unsubscribe();
  }
}
