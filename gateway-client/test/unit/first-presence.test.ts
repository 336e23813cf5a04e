// The first presence a mirror hears: resync when its registry may have started after attach.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startedSinceAttach } from "../../src/adapters/mirror.js";

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
