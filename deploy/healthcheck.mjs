#!/usr/bin/env node
// Container health probe with no curl or wget in the image: `node deploy/healthcheck.mjs [url]`.
// Default URL: http://127.0.0.1:<port of ROSTER_HTTP, else 7700>/readyz (the registry's readiness).
// Exit 0 on a 2xx answer within the timeout, 1 otherwise (Docker HEALTHCHECK and compose use it).
const TIMEOUT_MS = Number(process.env.HEALTHCHECK_TIMEOUT_MS ?? 2000);

function defaultUrl() {
  const listen = process.env.ROSTER_HTTP ?? "";
  const port = /:(\d{1,5})$/.exec(listen)?.[1] ?? "7700";
  return `http://127.0.0.1:${port}/readyz`;
}

const url = process.argv[2] ?? defaultUrl();
try {
  const res = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS) });
  await res.body?.cancel();
  if (!res.ok) {
    process.stderr.write(`unhealthy: ${url} answered ${res.status}\n`);
    process.exit(1);
  }
  process.exit(0);
} catch (err) {
  process.stderr.write(`unhealthy: ${url}: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
