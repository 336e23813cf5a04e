import { z } from "zod";

const UNITS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 };
const ORDER = ["h", "m", "s", "ms"];
const PART_RE = /(\d+(?:\.\d+)?)(ms|h|m|s)/y;
/** Longer than any duration anyone types: keeps a hostile config value from costing a long scan. */
const MAX_LENGTH = 64;

/**
 * Parses "500ms", "1s", "1.5m", "2h" and compound forms as Kubernetes, Prometheus and Consul users
 * type them ("1m30s", "1h2m3.5s") to milliseconds; null when it is not a duration. Units of a
 * compound form come largest first, each once, so a typo such as "30s1m" is rejected, not guessed.
 */
export function parseDuration(text: string): number | null {
  const t = text.trim();
  if (t.length === 0 || t.length > MAX_LENGTH) return null;
  let total = 0;
  let last = -1;
  PART_RE.lastIndex = 0;
  while (PART_RE.lastIndex < t.length) {
    const m = PART_RE.exec(t);
    if (!m) return null;
    const rank = ORDER.indexOf(m[2]!);
    if (rank <= last) return null;
    last = rank;
    total += Number(m[1]) * UNITS[m[2]!]!;
  }
  return Math.round(total);
}

export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms >= 3_600_000) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms >= 60_000) return `${ms / 60_000}m`;
  if (ms % 1000 === 0 && ms >= 1000) return `${ms / 1000}s`;
  return `${ms}ms`;
}

const DURATION_HINT = 'expected a duration like "1s"';

/**
 * A duration in a config file: a string such as "1s" or "500ms", or a number of milliseconds.
 * Parses to milliseconds.
 */
export const Duration = z
  .union([z.string(), z.number()], { error: DURATION_HINT })
  .transform((value, ctx) => {
    const ms = typeof value === "number" ? value : parseDuration(value);
    if (ms === null || !Number.isFinite(ms) || ms < 0) {
      ctx.addIssue({ code: "custom", message: DURATION_HINT });
      return z.NEVER;
    }
    return ms;
  });

/** A duration bounded to [min, max] milliseconds. */
export function durationBetween(minMs: number, maxMs: number) {
  return Duration.refine((ms) => ms >= minMs && ms <= maxMs, {
    error: `expected a duration between ${formatDuration(minMs)} and ${formatDuration(maxMs)}`,
  });
}
