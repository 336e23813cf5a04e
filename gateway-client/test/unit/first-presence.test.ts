// The registry's presence judged on an injected clock (core/presence.ts): overdue presence, the
// first presence a mirror hears (resync when its registry may have started after attach), another
// registry, the degraded mode, and why a mirror is stale.
import { test } from "node:test";
import assert from "node:assert/strict";
import { PresenceTracker, presenceCheckEveryMs, presenceOverdue, staleReasonOf, startedSinceAttach } from "../../src/core/presence.js";

test("first presence - a registry up since before attach needs no resync, one started since does", () => {
  const attachedAt = 1_000_000; // our clock
  const now = attachedAt + 5_000;
  // The registry's clock is 1 h off ours: only its uptime (sentAt - epoch) counts.
  const skew = 3_600_000;
  assert.equal(startedSinceAttach({ epoch: now + skew - 65_000, sentAt: now + skew }, attachedAt, now), false, "up 65 s, attached 5 s ago");
  assert.equal(startedSinceAttach({ epoch: now + skew - 2_000, sentAt: now + skew }, attachedAt, now), true, "up 2 s, attached 5 s ago");
  assert.equal(startedSinceAttach({ epoch: now - skew - 5_200, sentAt: now - skew }, attachedAt, now), true, "up 5.2 s: within the slack, errs towards a resync");
  assert.equal(startedSinceAttach({ epoch: 1, sentAt: now }, attachedAt, now), false, "an old epoch");
});

test("presence - overdue after missFactor intervals, not at exactly missFactor", () => {
  assert.equal(presenceOverdue(1_000, 200, 3, 1_600), false);
  assert.equal(presenceOverdue(1_000, 200, 3, 1_601), true);
  assert.equal(presenceCheckEveryMs(1_000), 500);
  assert.equal(presenceCheckEveryMs(200), 100);
  assert.equal(presenceCheckEveryMs(20), 50);
  assert.equal(presenceCheckEveryMs(60_000), 500);
});

test("presence - missing on the registry's own interval, back with the next beat, grace on reconnect", () => {
  let now = 10_000;
  const t = new PresenceTracker(3, 1_000);
  t.attach(now);
  now += 3_000;
  assert.equal(t.check(now), false, "3 configured intervals: not yet");
  const beat = { registryId: "r1", epoch: 1, sentAt: 50_000, intervalMs: 200 }; // up 49 s: no resync
  assert.deepEqual(t.onBeat(beat, now), { registry: "r1#1", newRegistry: false, degradedChanged: false, recovered: false });
  assert.equal(t.intervalMs, 200);
  now += 601;
  assert.equal(t.check(now), true, "3 of the registry's 200 ms intervals");
  assert.equal(t.missing, true);
  assert.equal(t.check(now + 1), false, "no change, no report");
  assert.equal(t.onBeat(beat, now).recovered, true);
  assert.equal(t.missing, false);
  now += 10_000;
  t.restartGrace(now);
  assert.equal(t.check(now + 600), false, "a reconnect restarts the grace period");
  assert.equal(t.check(now + 601), true);
});

test("presence - another registry or epoch asks for a resync; degraded turns on and off once", () => {
  const t = new PresenceTracker(3, 1_000);
  t.attach(0);
  assert.equal(t.onBeat({ registryId: "r1", epoch: 100, sentAt: 200, intervalMs: 1_000 }, 1_000).newRegistry, true, "first heard, up 0.1 s, attached 1 s ago");
  assert.equal(t.onBeat({ registryId: "r1", epoch: 100, sentAt: 1_200, intervalMs: 1_000 }, 2_000).newRegistry, false);
  assert.equal(t.onBeat({ registryId: "r1", epoch: 101, sentAt: 2_200, intervalMs: 1_000 }, 3_000).newRegistry, true, "new epoch");
  assert.equal(t.onBeat({ registryId: "r2", epoch: 101, sentAt: 3_200, intervalMs: 1_000 }, 4_000).newRegistry, true, "other registry");
  const on = t.onBeat({ registryId: "r2", epoch: 101, sentAt: 4_200, intervalMs: 1_000, degraded: { reason: "mass-silence", since: 4_000 } }, 5_000);
  assert.equal(on.degradedChanged, true);
  assert.deepEqual(t.degraded, { reason: "mass-silence", since: 4_000 });
  const still = t.onBeat({ registryId: "r2", epoch: 101, sentAt: 5_200, intervalMs: 1_000, degraded: { reason: "other", since: 4_000 } }, 6_000);
  assert.equal(still.degradedChanged, false, "details updated, no change");
  assert.equal(t.degraded?.reason, "other");
  assert.equal(t.onBeat({ registryId: "r2", epoch: 101, sentAt: 6_200, intervalMs: 1_000 }, 7_000).degradedChanged, true);
  assert.equal(t.degraded, null);
});

test("presence - the stale reason names the most fundamental cause", () => {
  assert.equal(staleReasonOf(false, false, true), "nats-unreachable");
  assert.equal(staleReasonOf(true, false, true), "nats-disconnected");
  assert.equal(staleReasonOf(true, true, true), "presence-lost");
  assert.equal(staleReasonOf(true, true, false), undefined);
});
