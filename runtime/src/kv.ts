import { JetStreamApiError, jetstream, type JetStreamOptions } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { retry } from "./backoff.js";
import type { MinimalLogger } from "./log.js";

/** `"auto"`: 3 on a NATS cluster (fewer when the cluster has fewer servers), 1 on a single server. */
export type Replicas = number | "auto";

export interface OpenBucketOptions {
  replicas: Replicas;
  /** Values kept per key (default 1). */
  history?: number;
  /** JetStream API request timeout (default: the client's). */
  timeoutMs?: number;
  logger?: MinimalLogger;
  signal?: AbortSignal;
}

// JetStream's own codes for "this many replicas cannot be placed here": not clustered, fewer
// peers than replicas (insufficient resources, no suitable peers for placement).
const TOO_MANY_REPLICAS = new Set([10074, 10023, 10005]);

function tooManyReplicas(err: unknown): boolean {
  if (err instanceof JetStreamApiError && TOO_MANY_REPLICAS.has(err.code)) return true;
  return /replicas > 1 not supported|insufficient resources|no suitable peers/i.test(String(err));
}

/**
 * The replica counts to try, largest first. "auto" on a cluster starts at 3, or at the number of
 * servers the connection was told of (`connect_urls`) when fewer, and steps down; on one server 1.
 */
export function replicaCandidates(nc: NatsConnection, replicas: Replicas): number[] {
  if (replicas !== "auto") return [replicas];
  if (!nc.info?.cluster) return [1];
  const servers = nc.info.connect_urls?.length ?? 3;
  const top = Math.max(1, Math.min(3, servers || 3));
  return Array.from({ length: top }, (_, i) => top - i);
}

/**
 * Creates the bucket, or binds to it as it is when it exists with other settings. With "auto"
 * replicas, R3 is tried first on a cluster and stepped down while the server says it cannot place
 * that many. Once: no retry (see openBucket).
 */
export async function createBucket(nc: NatsConnection, name: string, opts: Omit<OpenBucketOptions, "signal">): Promise<{ kv: KV; replicas: number | null }> {
  const jsOpts: JetStreamOptions = opts.timeoutMs ? { timeout: opts.timeoutMs } : {};
  const kvm = new Kvm(jetstream(nc, jsOpts));
  const candidates = replicaCandidates(nc, opts.replicas);
  let lastErr: unknown;
  for (const replicas of candidates) {
    try {
      return { kv: await kvm.create(name, { history: opts.history ?? 1, replicas }), replicas };
    } catch (err) {
      lastErr = err;
      if (tooManyReplicas(err) && replicas !== candidates[candidates.length - 1]) {
        opts.logger?.info({ bucket: name, replicas, err: String(err) }, "bucket replicas not placeable here: trying fewer");
        continue;
      }
      break;
    }
  }
  // An existing bucket with other settings: bind to it as it is.
  opts.logger?.debug({ bucket: name, err: String(lastErr) }, "kv create failed, binding to the existing bucket");
  const kv = await kvm.open(name);
  await kv.status();
  return { kv, replicas: null };
}

/** createBucket, retried with backoff while JetStream is unavailable (until `signal` aborts). */
export async function openBucket(nc: NatsConnection, name: string, opts: OpenBucketOptions): Promise<KV> {
  const r = await retry(() => createBucket(nc, name, opts), {
    ...(opts.signal ? { signal: opts.signal } : {}),
    giveUp: () => nc.isClosed(),
    onError: (err, attempt, retryInMs) => opts.logger?.warn({ bucket: name, err: String(err), attempt, retryInMs }, "bucket not available yet, retrying"),
  });
  return r.kv;
}
