/**
 * Measures how late the event loop runs a timer (what a health transition read now would wait)
 * and reports it every `intervalMs`: the bulk lane sheds bulk work while it is high.
 */
export function startLagProbe(onLag: (lagMs: number, now: number) => void, intervalMs = 50): NodeJS.Timeout {
  let expected = performance.now() + intervalMs;
  const timer = setInterval(() => {
    const now = performance.now();
    onLag(Math.max(0, now - expected), now);
    expected = now + intervalMs;
  }, intervalMs);
  timer.unref();
  return timer;
}
