// The gateway's clock: every time that the request path, the balancers, budgets, hedging, the
// traffic policies and the try timeouts compare with one another is read here, so they agree.
//
// Monotonic (performance.now(), which a wall-clock step does not move) but epoch-based like
// Date.now() — performance.timeOrigin + performance.now(), as OpenTelemetry stamps its spans — so
// one reading serves as a point in time and, subtracted, as a latency: a try reads the clock once
// when it starts and once when it ends (it was four reads, two of each clock, ~35 ns each here).
// Wall-clock time (Date.now()) stays where a time is compared with another host's or written to a
// file: the registry's presence, the last-known-good file.
//
// Imported, not the global `performance`: that is a lazy getter on Node 20 (~100 instructions per read).
import { performance } from "node:perf_hooks";

const ORIGIN = performance.timeOrigin;

/** Milliseconds since the epoch, on a monotonic clock (see above). */
export function nowMs(): number {
  return ORIGIN + performance.now();
}
