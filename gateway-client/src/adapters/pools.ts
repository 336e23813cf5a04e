// The connection pools of a gateway, one per upstream origin, as undici's BalancedPool keeps
// them: `addUpstream`/`removeUpstream` are idempotent and the pool is made by an injected
// factory (undici's Pool by default), so a host can bring its own connector, TLS or
// interceptors. The gateway adds an upstream when a service first sends to an instance and
// removes those no service lists any more.
import { Pool } from "undici";
import type { UpstreamPool } from "./engine.js";

/** Options the gateway gives every pool (from its `pool` policy). */
export interface UpstreamPoolOptions {
  connections: number;
  keepAliveTimeout: number;
  connect: { timeout: number };
}

/** Makes the pool of one origin (`http://host:port`). */
export type PoolFactory = (origin: string, options: UpstreamPoolOptions) => UpstreamPool;

export const defaultPoolFactory: PoolFactory = (origin, options) => new Pool(origin, options);

export class UpstreamPools {
  private readonly pools = new Map<string, UpstreamPool>();

  constructor(
    private readonly factory: PoolFactory,
    private readonly options: UpstreamPoolOptions,
  ) {}

  get size(): number {
    return this.pools.size;
  }

  get(origin: string): UpstreamPool | undefined {
    return this.pools.get(origin);
  }

  origins(): IterableIterator<string> {
    return this.pools.keys();
  }

  /** The pool of `origin`, made on first use. */
  addUpstream(origin: string): UpstreamPool {
    let pool = this.pools.get(origin);
    if (!pool) {
      pool = this.factory(origin, this.options);
      this.pools.set(origin, pool);
    }
    return pool;
  }

  /** Forgets `origin` and closes its pool (in-flight requests finish); false when it had none. */
  removeUpstream(origin: string): boolean {
    const pool = this.pools.get(origin);
    if (!pool) return false;
    this.pools.delete(origin);
    pool.close().catch(() => {});
    return true;
  }

  /** Closes every pool; a pool whose bodies nobody reads is destroyed after `graceMs`. */
  async close(graceMs = 2000): Promise<void> {
    const all = [...this.pools.values()];
    this.pools.clear();
    await Promise.allSettled(
      all.map(async (p) => {
        const timer = setTimeout(() => void p.destroy().catch(() => {}), graceMs);
        await p.close().catch(() => {});
        clearTimeout(timer);
      }),
    );
  }
}
