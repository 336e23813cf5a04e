import { Agent, request, type Dispatcher } from "undici";
import type { HttpCheckSpec } from "../../config.js";
import type { CheckResult } from "../../core/check.js";
import { guardedLookup } from "./guarded-lookup.js";
import { errorText } from "./util.js";

/**
 * HTTP checks: 2xx passing, 429 warning, anything else critical; so are timeouts and
 * connection errors. One keep-alive agent per TLS mode, shared by every http check.
 */
export class HttpProber {
  /** One keep-alive agent per (TLS verification, guarded lookup) pair, made when first needed. */
  private readonly agents = new Map<string, Agent>();

  private dispatcher(spec: HttpCheckSpec): Dispatcher {
    const key = `${spec.tlsSkipVerify ? "insecure" : "strict"}-${spec.guarded ? "guarded" : "any"}`;
    let agent = this.agents.get(key);
    if (!agent) {
      const connect = { ...(spec.tlsSkipVerify ? { rejectUnauthorized: false } : {}), ...(spec.guarded ? { lookup: guardedLookup } : {}) };
      agent = new Agent({ keepAliveTimeout: 4000, connections: 64, connect });
      this.agents.set(key, agent);
    }
    return agent;
  }

  /**
   * One run. The timeout settles the run itself: undici does not settle a request that is still
   * waiting for a connection when its signal aborts (a hung target whose accept queue is full
   * leaves the connect pending until undici's own connect timeout), so the run races its request
   * against the timer, and a late result is ignored. The timer is a plain setTimeout (not
   * AbortSignal.any / AbortSignal.timeout, which do not abort an undici request on Node 20); it
   * covers the headers and the body. `signal` aborts the run when the check is stopped.
   */
  async probe(spec: HttpCheckSpec, signal?: AbortSignal): Promise<CheckResult> {
    const ac = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<CheckResult>((resolve) => {
      timer = setTimeout(() => {
        ac.abort();
        resolve({ status: "critical", output: `timeout after ${spec.timeoutMs}ms` });
      }, spec.timeoutMs);
    });
    const onStop = () => ac.abort();
    signal?.addEventListener("abort", onStop, { once: true });
    const attempt = (async (): Promise<CheckResult> => {
      try {
        const res = await request(spec.url, {
          method: spec.method,
          headers: { "user-agent": "roster-agent", ...spec.headers },
          signal: ac.signal,
          dispatcher: this.dispatcher(spec),
        });
        await res.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
        const code = res.statusCode;
        const status = code >= 200 && code < 300 ? "passing" : code === 429 ? "warning" : "critical";
        return { status, output: `HTTP ${code}` };
      } catch (err) {
        if (signal?.aborted) return { status: "critical", output: "check stopped" };
        return { status: "critical", output: errorText(err) };
      }
    })();
    try {
      // A result that comes after the timer lost the race: the run is already a timeout.
      return await Promise.race([attempt, timedOut]);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onStop);
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.agents.values()].map((a) => a.destroy()));
  }
}
