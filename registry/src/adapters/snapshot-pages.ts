import { LIMITS, PROTOCOL_VERSION, Snapshot, encode, type CatalogInstance } from "roster-schemas";
import type { ServiceView } from "./catalog-memory.js";

/** Room left in a page for the envelope (service, revision, page numbers, brackets). */
const ENVELOPE_RESERVE = 4096;
export const SNAPSHOT_PAGE_BUDGET = LIMITS.maxMessageBytes - ENVELOPE_RESERVE;

/**
 * Splits instances (already sorted by id) into pages whose encoded size stays under `budget`
 * bytes. Deterministic for a given list, so every replica answering for the same revision cuts
 * the same pages.
 */
export function paginate(instances: readonly CatalogInstance[], budget = SNAPSHOT_PAGE_BUDGET): CatalogInstance[][] {
  const pages: CatalogInstance[][] = [[]];
  let size = 0;
  for (const inst of instances) {
    const bytes = Buffer.byteLength(JSON.stringify(inst)) + 1;
    if (size + bytes > budget && pages[pages.length - 1]!.length > 0) {
      pages.push([]);
      size = 0;
    }
    pages[pages.length - 1]!.push(inst);
    size += bytes;
  }
  return pages;
}

interface Cached {
  revision: number;
  known: boolean;
  pages: Uint8Array[];
}

/**
 * Encoded snapshot pages per service, rebuilt only when the service's revision moves: a thousand
 * clients resyncing the same service after a NATS blip cost one encode, not a thousand.
 */
export class SnapshotPages {
  private readonly cache = new Map<string, Cached>();
  /**
   * The pages of each service's previous revision: a client paging through revision R while the
   * service moves to R+1 finishes R (it asks with `revision`), then catches up from the deltas it
   * buffered, instead of starting over (and never finishing under steady churn).
   */
  private readonly previous = new Map<string, Cached>();

  /** Pages encoded (cache misses): once per service and revision, however many ask. */
  encodes = 0;

  constructor(
    private readonly view: (service: string) => ServiceView,
    private readonly budget = SNAPSHOT_PAGE_BUDGET,
    /** Revision without the instances: a hit must not copy and sort a 2,000-instance list per request. */
    private readonly revisionOf?: (service: string) => { known: boolean; revision: number },
  ) {}

  /** Page `page` of `service`; of `revision` when given and still held (current or previous), else of the current revision. */
  page(service: string, page: number, revision?: number): Uint8Array {
    const held = revision === undefined ? undefined : [this.cache.get(service), this.previous.get(service)].find((x) => x?.revision === revision);
    const c = held ?? this.current(service);
    const hit = c.pages[page];
    if (hit) return hit;
    // Past the end (the service shrank between two pages): an empty page tells the client to start over.
    return encode(Snapshot, { v: PROTOCOL_VERSION, kind: "snapshot", service, revision: c.revision, known: c.known, page, pages: c.pages.length, instances: [] }, "snapshot");
  }

  /** The cached pages of `service` at its current revision, encoded now on a miss. */
  private current(service: string): Cached {
    const c = this.cache.get(service);
    const meta = this.revisionOf?.(service);
    if (c && meta && c.revision === meta.revision && c.known === meta.known) return c;
    const v = this.view(service);
    if (c && c.revision === v.revision && c.known === v.known) return c;
    this.encodes++;
    const slices = paginate(v.instances, this.budget);
    const pages = slices.map((instances, i) =>
      encode(Snapshot, { v: PROTOCOL_VERSION, kind: "snapshot", service, revision: v.revision, known: v.known, page: i, pages: slices.length, instances }, "snapshot"),
    );
    const fresh = { revision: v.revision, known: v.known, pages };
    // Only services the registry knows are cached: a requester looping over made-up names must not grow memory.
    if (c && c.known) this.previous.set(service, c);
    if (v.known) this.cache.set(service, fresh);
    else {
      this.cache.delete(service);
      this.previous.delete(service);
    }
    return fresh;
  }

  /** How many services have cached pages (bounded by the services the catalog knows). */
  get cachedServices(): number {
    return this.cache.size;
  }

  /** Drops cached bytes (tests, memory pressure). */
  clear(): void {
    this.cache.clear();
    this.previous.clear();
  }
}

/**
 * Slack for clock skew between a requester and the registry when judging a snapshot request's
 * `deadline` (the requester's clock): a request is skipped only once it is this late.
 */
export const DEADLINE_GRACE_MS = 250;

/** True when a request's deadline (if it sent one) passed more than the grace ago. */
export function deadlinePassed(deadline: number | undefined, nowMs: number, graceMs = DEADLINE_GRACE_MS): boolean {
  return deadline !== undefined && nowMs > deadline + graceMs;
}
