import { z } from "zod";

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;

/** Parses "500ms", "1s", "1.5m", "2h" to milliseconds; null when it is not a duration. */
export function parseDuration(text: string): number | null {
  const m = DURATION_RE.exec(text.trim());
  if (!m) return null;
  return Math.round(Number(m[1]) * UNITS[m[2]!]!);
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
