/**
 * Aligned text columns, two spaces apart, no trailing blanks: what `kubectl get` and `consul
 * members` print. Cells are flattened to one line so a newline in a value cannot break the grid.
 */
export function table(headers: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const clean = (s: string) => s.replace(/[\r\n\t]+/g, " ");
  const all = [headers.map(clean), ...rows.map((r) => headers.map((_, i) => clean(r[i] ?? "")))];
  const widths = headers.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  return all.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n") + "\n";
}

/** `key  value` lines for one record (health, register results), keys aligned. */
export function keyValues(pairs: ReadonlyArray<readonly [string, string]>): string {
  const width = Math.max(0, ...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${k.padEnd(width)}  ${v}`.trimEnd()).join("\n") + "\n";
}
