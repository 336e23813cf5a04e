import type { CatalogInstance } from "roster-schemas";

export interface ServiceView {
  known: boolean;
  /** Revision of the last change to this service (0 if never seen). */
  revision: number;
  instances: CatalogInstance[];
}

/** What the HTTP API and the snapshot responder read. */
export interface CatalogReader {
  /** Highest catalog revision written or loaded. */
  readonly revision: number;
  service(name: string): ServiceView;
  /** `service(name)` without the instances: no copy, no sort. */
  serviceRevision(name: string): { known: boolean; revision: number };
  /**
   * The live records of `name` by id, not copied (read at once, never kept), or undefined if unknown.
   * A record is replaced, never mutated, when its instance changes: caches of encoded instances
   * (core/instance-fragments.ts) rely on it.
   */
  instancesOf(name: string): ReadonlyMap<string, CatalogInstance> | undefined;
  services(): Array<{ name: string; revision: number; instances: CatalogInstance[] }>;
  /**
   * Resolves true as soon as `service`'s revision passes `afterRevision`, false after
   * `timeoutMs` or when `signal` aborts. No polling: woken by `apply*`.
   */
  waitForChange(service: string, afterRevision: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean>;
  /**
   * Calls `listener` after each KV-confirmed change: the writer's own writes and, on a standby, each
   * change its mirror applies once caught up (not records loaded at start); returns an unsubscribe.
   */
  onChange(listener: (change: CatalogChange) => void): () => void;
}

/** One KV-confirmed change, as the delta published for it says it. */
export interface CatalogChange {
  service: string;
  id: string;
  revision: number;
  /** The service's revision before this change (0 if none). */
  prevRevision: number;
  /** The new record, or null for a delete. */
  record: CatalogInstance | null;
}

interface ServiceEntry {
  revision: number;
  instances: Map<string, CatalogInstance>;
}

/**
 * The registry's KV-confirmed view of the catalog: updated after each KV write succeeds, in the
 * same turn as its delta is published (just after it), so a snapshot read from here is consistent
 * with the deltas.
 */
export class CatalogMemory implements CatalogReader {
  private readonly byService = new Map<string, ServiceEntry>();
  private readonly waiters = new Map<string, Set<() => void>>();
  private readonly listeners = new Set<(change: CatalogChange) => void>();
  private readonly touchListeners = new Set<(service: string) => void>();
  revision = 0;

  private entry(service: string): ServiceEntry {
    let e = this.byService.get(service);
    if (!e) {
      e = { revision: 0, instances: new Map() };
      this.byService.set(service, e);
    }
    return e;
  }

  /** Records a change at `revision` (put when `record` is given, delete otherwise); returns the previous service revision. */
  apply(service: string, id: string, revision: number, record: CatalogInstance | null): number {
    const prev = this.set(service, id, revision, record);
    for (const l of this.listeners) {
      try {
        l({ service, id, revision, prevRevision: prev, record });
      } catch {
        // A listener (an HTTP stream) must never break the KV write path that called us.
      }
    }
    return prev;
  }

  onChange(listener: (change: CatalogChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Calls `listener` with the service after every change to memory: this replica's own writes,
   * records loaded at start and a standby's mirror alike (`onChange` leaves out what is loaded). For consumers that re-read the service (the xDS server); returns an unsubscribe.
   */
  onTouch(listener: (service: string) => void): () => void {
    this.touchListeners.add(listener);
    return () => this.touchListeners.delete(listener);
  }

  private set(service: string, id: string, revision: number, record: CatalogInstance | null): number {
    const e = this.entry(service);
    const prev = e.revision;
    if (record) e.instances.set(id, record);
    else e.instances.delete(id);
    if (revision > e.revision) e.revision = revision;
    if (revision > this.revision) this.revision = revision;
    this.wake(service);
    for (const l of this.touchListeners) {
      try {
        l(service);
      } catch {
        // as for onChange: never break the write path
      }
    }
    return prev;
  }

  /** A record loaded from KV at start (null value: a delete marker, the service is still known). */
  load(service: string, id: string, revision: number, record: CatalogInstance | null): void {
    // Not a change: the latest value per key, no history (listeners never see it).
    this.set(service, id, revision, record);
  }

  get(service: string, id: string): CatalogInstance | undefined {
    return this.byService.get(service)?.instances.get(id);
  }

  all(): CatalogInstance[] {
    const out: CatalogInstance[] = [];
    for (const e of this.byService.values()) out.push(...e.instances.values());
    return out;
  }

  service(name: string): ServiceView {
    const e = this.byService.get(name);
    if (!e) return { known: false, revision: 0, instances: [] };
    return { known: true, revision: e.revision, instances: [...e.instances.values()].sort((a, b) => a.id.localeCompare(b.id)) };
  }

  /** `service(name)` without the instances: no copy, no sort (the snapshot cache's hit path). */
  serviceRevision(name: string): { known: boolean; revision: number } {
    const e = this.byService.get(name);
    return e ? { known: true, revision: e.revision } : { known: false, revision: 0 };
  }

  instancesOf(name: string): ReadonlyMap<string, CatalogInstance> | undefined {
    return this.byService.get(name)?.instances;
  }

  services(): Array<{ name: string; revision: number; instances: CatalogInstance[] }> {
    return [...this.byService.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, e]) => ({ name, revision: e.revision, instances: [...e.instances.values()] }));
  }

  /** Known services (delete markers included), without building the list. */
  get serviceCount(): number {
    return this.byService.size;
  }

  get instanceCount(): number {
    let n = 0;
    for (const e of this.byService.values()) n += e.instances.size;
    return n;
  }

  waitForChange(service: string, afterRevision: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if ((this.byService.get(service)?.revision ?? 0) > afterRevision) return Promise.resolve(true);
    if (signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      let set = this.waiters.get(service);
      if (!set) {
        set = new Set();
        this.waiters.set(service, set);
      }
      const done = (changed: boolean) => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        const s = this.waiters.get(service);
        s?.delete(check);
        if (s && s.size === 0) this.waiters.delete(service);
        resolve(changed);
      };
      const check = () => {
        if ((this.byService.get(service)?.revision ?? 0) > afterRevision) done(true);
      };
      const onAbort = () => done(false);
      const timer = setTimeout(() => done(false), timeoutMs);
      signal?.addEventListener("abort", onAbort, { once: true });
      set.add(check);
    });
  }

  /** Number of change listeners (open event streams + the change ring; for tests). */
  get listening(): number {
    return this.listeners.size;
  }

  /** Number of blocked waiters (for tests and status). */
  get waiting(): number {
    let n = 0;
    for (const s of this.waiters.values()) n += s.size;
    return n;
  }

  private wake(service: string): void {
    const set = this.waiters.get(service);
    if (!set) return;
    for (const check of [...set]) check();
  }
}
