// HTTP calls to the registry API, with real timeouts (AbortController + setTimeout: see
// DESIGN.md's undici pitfall on Node 20).
import { Agent, request } from "undici";
import { metricValue, scrape } from "roster-testkit";

const dispatcher = new Agent({ connections: 64, keepAliveTimeout: 60_000, headersTimeout: 0, bodyTimeout: 0 });

/** GET `url` → { status, index, body (parsed JSON or text) }; throws after `timeoutMs`. */
export async function getJson(url, { timeoutMs = 10_000 } = {}) {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new Error(`GET ${url}: no answer within ${timeoutMs}ms`)), timeoutMs);
  try {
    const res = await request(url, { method: "GET", signal: ac.signal, dispatcher });
    const text = await res.body.text();
    let body = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    const idx = res.headers["x-roster-index"];
    return { status: res.statusCode, index: idx === undefined ? undefined : Number(idx), body };
  } finally {
    clearTimeout(timer);
  }
}

/** The instance list from a `GET /v1/services/:name/instances` body, whatever its envelope. */
/** Values of the named metrics from a Prometheus endpoint, parsed by the test kit's reader (NaN when absent). */
export async function metricValues(url, names) {
  const samples = await scrape(url);
  return Object.fromEntries(names.map((n) => [n, metricValue(samples, n) ?? NaN]));
}

export function instancesOf(body) {
  if (Array.isArray(body)) return body;
  if (body && Array.isArray(body.instances)) return body.instances;
  return [];
}

export async function closeHttp() {
  // destroy, not close: aborts blocking queries still waiting on the registry.
  await dispatcher.destroy();
}
