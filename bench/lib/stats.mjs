// Order statistics for benchmark samples. Nearest-rank percentiles: p99 of 50 samples is
// the 50th smallest (the max), which is the honest reading of a small sample.

/** The p-th percentile (0..100) of `values`, nearest rank; NaN for no values. */
export function percentile(values, p) {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** n, min, p50, p90, p99, max and mean of `values`. */
export function summarize(values) {
  if (values.length === 0) return { n: 0, min: NaN, p50: NaN, p90: NaN, p99: NaN, max: NaN, mean: NaN };
  let sum = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    sum += v;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return {
    n: values.length,
    min,
    p50: percentile(values, 50),
    p90: percentile(values, 90),
    p99: percentile(values, 99),
    max,
    mean: sum / values.length,
  };
}

/** A number for a table: fixed decimals, "n/a" for NaN. */
export function fmt(value, decimals = 1) {
  if (value === undefined || value === null || Number.isNaN(value)) return "n/a";
  return Number(value).toFixed(decimals);
}
