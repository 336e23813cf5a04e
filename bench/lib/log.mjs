// Progress lines on stderr (stdout carries only the markdown result).
const t0 = Date.now();

export function progress(...parts) {
  const s = ((Date.now() - t0) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[${s}s] ${parts.join(" ")}\n`);
}
