import { Agent, request, type Dispatcher } from "undici";
import type { HttpCheckSpec } from "../../config.js";
import type { CheckResult } from "../../core/check.js";
import { errorText } from "./util.js";

/**
 * HTTP checks: 2xx passing, 429 warning, anything else critical; so are timeouts and
 * connection errors. One keep-alive agent per TLS mode, shared by every http check.
 */
export class HttpProber {
  private readonly strict: Agent;
  private insecure: Agent | undefined;

  constructor() {
    this.strict = new Agent({ keepAliveTimeout: 4000, connections: 64 });
  }

  private dispatcher(spec: HttpCheckSpec): Dispatcher {
    if (!spec.tlsSkipVerify) return this.strict;
    this.insecure ??= new Agent({ keepAliveTimeout: 4000, connections: 64, connect: { rejectUnauthorized: false } });
    return this.insecure;
  }

  /**
   * One run. The timeout is an AbortController + setTimeout (not AbortSignal.any /
   * AbortSignal.timeout, which does not abort an undici request on Node 20); it covers the
   * headers and the body. `signal` aborts the run when the check is stopped.
   */
  async probe(spec: HttpCheckSpec, signal?: AbortSignal): Promise<CheckResult> {
    const ac = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ac.abort();
    }, spec.timeoutMs);
    const onStop = () => ac.abort();
    signal?.addEventListener("abort", onStop, { once: true });
    try {
      const res = await request(spec.url, {
        method: spec.method,
        headers: { "user-agent": "roster-agent", ...spec.headers },
        signal: ac.signal,
        dispatcher: this.dispatcher(spec),
      });
      await res.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
      if (timedOut) return { status: "critical", output: `timeout after ${spec.timeoutMs}ms` };
      const code = res.statusCode;
      const status = code >= 200 && code < 300 ? "passing" : code === 429 ? "warning" : "critical";
      return { status, output: `HTTP ${code}` };
    } catch (err) {
      if (timedOut) return { status: "critical", output: `timeout after ${spec.timeoutMs}ms` };
      if (signal?.aborted) return { status: "critical", output: "check stopped" };
      return { status: "critical", output: errorText(err) };
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onStop);
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.strict.destroy(), this.insecure?.destroy()]);
  }
}
