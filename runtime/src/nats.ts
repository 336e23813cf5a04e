import { connect, type ConnectionOptions, type NatsConnection } from "@nats-io/transport-node";
import { retry } from "./backoff.js";
import type { MinimalLogger } from "./log.js";

export interface ConnectRetryOptions {
  signal?: AbortSignal;
  logger?: MinimalLogger;
  /** Fields added to the "not reachable" log line (say which URL, redacted). */
  logFields?: Record<string, unknown>;
  initialMs?: number;
  maxMs?: number;
}

/**
 * The first connect, retried with backoff until it succeeds or `signal` aborts (then it throws).
 * Logs the first failure and every 20th. After that the client's own reconnect takes over.
 */
export function connectWithRetry(options: ConnectionOptions, opts: ConnectRetryOptions = {}): Promise<NatsConnection> {
  return retry(() => connect(options), {
    initialMs: opts.initialMs ?? 200,
    maxMs: opts.maxMs ?? 2000,
    ...(opts.signal ? { signal: opts.signal } : {}),
    onError: (err, attempt) => {
      if (attempt === 1 || attempt % 20 === 0) opts.logger?.warn({ err: String(err), attempt, ...opts.logFields }, "NATS not reachable, retrying");
    },
  });
}
