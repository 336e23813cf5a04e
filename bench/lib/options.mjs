// Benchmark options: `--name=value` on the command line, else env BENCH_NAME, else a default.
// `--hosts=1000` and `BENCH_HOSTS=1000` are the same option.

function fromArgv(name) {
  const prefix = `--${name}=`;
  const hit = process.argv.slice(2).find((a) => a.startsWith(prefix));
  return hit === undefined ? undefined : hit.slice(prefix.length);
}

function envName(name) {
  return `BENCH_${name.toUpperCase().replace(/-/g, "_")}`;
}

/** A numeric option; exits with a clear message on a non-number. */
export function numberOption(name, fallback) {
  const raw = fromArgv(name) ?? process.env[envName(name)];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) {
    process.stderr.write(`bad option ${name}=${raw}: expected a non-negative number (--${name}=N or ${envName(name)}=N)\n`);
    process.exit(2);
  }
  return n;
}

/** A string option. */
export function stringOption(name, fallback) {
  const raw = fromArgv(name) ?? process.env[envName(name)];
  return raw === undefined || raw === "" ? fallback : raw;
}

/** The command line that reproduces this run, for the report. */
export function commandLine(script) {
  const args = process.argv.slice(2);
  return ["node", script, ...args].join(" ");
}
