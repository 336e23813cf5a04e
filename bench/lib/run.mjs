// Lifecycle of one benchmark script: a hard deadline, cleanup on every exit path
// (normal end, error, deadline, Ctrl-C), and a non-zero exit code on failure.
import { progress } from "./log.mjs";

const cleanups = [];

/** Registers `fn` to run (last registered, first run) when the benchmark ends in any way. */
export function defer(fn) {
  cleanups.push(fn);
}

let cleaning = null;
async function cleanup() {
  cleaning ??= (async () => {
    while (cleanups.length) {
      const fn = cleanups.pop();
      try {
        await Promise.race([fn(), new Promise((r) => setTimeout(r, 10_000).unref())]);
      } catch (err) {
        progress(`cleanup failed: ${err?.message ?? err}`);
      }
    }
  })();
  return cleaning;
}

/**
 * Runs `main` with a deadline of `maxSeconds`: past it the benchmark is abandoned, cleaned
 * up and exits 1, so no run can hang a CI job or a `npm run bench`.
 */
export async function runBench(name, maxSeconds, main) {
  const deadline = setTimeout(async () => {
    progress(`${name}: deadline of ${maxSeconds}s passed, giving up`);
    await cleanup();
    process.exit(1);
  }, maxSeconds * 1000);
  // A throw in a timer or a listener must not leave the processes the benchmark started behind.
  for (const ev of ["uncaughtException", "unhandledRejection"]) {
    process.once(ev, async (err) => {
      progress(`${name}: ${ev}: ${err?.stack ?? err}`);
      await cleanup();
      process.exit(1);
    });
  }
  for (const sig of ["SIGINT", "SIGTERM"]) {
    process.once(sig, async () => {
      progress(`${name}: ${sig}, cleaning up`);
      await cleanup();
      process.exit(130);
    });
  }
  let code = 0;
  try {
    await main();
  } catch (err) {
    progress(`${name} failed: ${err?.stack ?? err}`);
    code = 1;
  }
  await cleanup();
  clearTimeout(deadline);
  process.exit(code);
}
