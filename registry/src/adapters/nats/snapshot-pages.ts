import { CatalogInstance, LIMITS, PROTOCOL_VERSION, Snapshot, encode } from "roster-schemas";
import { ServiceFragments, joinFragments, pageStarts, type Fragment } from "../../core/instance-fragments.js";

/** Room left in a page for the envelope (service, revision, page numbers, brackets). */
const ENVELOPE_RESERVE = 4096;
export const SNAPSHOT_PAGE_BUDGET = LIMITS.maxMessageBytes - ENVELOPE_RESERVE;

/** The pages of one revision of a service, joined from its fragments on first ask. */
interface Cached {
  revision: number;
  known: boolean;
  /** The fragments of this revision (kept: a later sync replaces the array, never changes it). */
  fragments: readonly Fragment[];
  starts: number[];
  pages: Array<Uint8Array | undefined>;
  /** Each page's instances joined (`{...},{...}`), without the envelope. */
  bodies: Array<Uint8Array | undefined>;
}

const UTF8 = new TextEncoder();
const PAGE_SUFFIX = UTF8.encode("]}");
const EMPTY = new Uint8Array(0);
/** What the page cache reads (CatalogMemory). */
export interface SnapshotSource {
  /** The service's revision without its instances (no copy, no sort). */
  serviceRevision(service: string): { known: boolean; revision: number };
  /** The service's live records by id (not copied: read at once), or undefined if unknown. */
  instancesOf(service: string): ReadonlyMap<string, CatalogInstance> | undefined;
}

/**
 * Snapshot pages per service and revision, joined from per-instance fragments
 * (core/instance-fragments.ts): a thousand clients resyncing the same revision cost one join per
 * page, and after one instance changed the next revision costs one instance encoded plus a copy
 * of bytes (before: every instance validated and encoded again, 44 ms for 2,000 instances).
 */
export class SnapshotPages {
  private readonly cache = new Map<string, Cached>();
  /**
   * The pages of each service's previous revision: a client paging through revision R while the
   * service moves to R+1 finishes R (it asks with `revision`), then catches up from the deltas it
   * buffered, instead of starting over (and never finishing under steady churn).
   */
  private readonly previous = new Map<string, Cached>();
  private readonly fragments = new Map<string, ServiceFragments>();

  /** Revisions cut into pages (cache misses): once per service and revision, however many ask. */
  encodes = 0;

  constructor(
    private readonly source: SnapshotSource,
    private readonly budget = SNAPSHOT_PAGE_BUDGET,
  ) {}

  /** Page `page` of `service`; of `revision` when given and still held (current or previous), else of the current revision. */
  page(service: string, page: number, revision?: number): Uint8Array {
    const held = revision === undefined ? undefined : [this.cache.get(service), this.previous.get(service)].find((x) => x?.revision === revision);
    const c = held ?? this.current(service);
    if (page < c.starts.length) return (c.pages[page] ??= this.join(service, c, page));
    // Past the end (the service shrank between two pages): an empty page tells the client to start over.
    return this.envelope(service, c, page);
  }

  /** Instances encoded into fragments so far (each once per record). */
  get instancesEncoded(): number {
    let n = 0;
    for (const f of this.fragments.values()) n += f.encodes;
    return n;
  }

  private join(service: string, c: Cached, page: number): Uint8Array {
    const body = (c.bodies[page] ??= joinFragments(EMPTY, c.fragments.slice(c.starts[page], c.starts[page + 1] ?? c.fragments.length), EMPTY));
    const bytes = this.envelope(service, c, page, body);
    if (bytes.byteLength > LIMITS.maxMessageBytes) throw new Error(`snapshot page of ${bytes.byteLength} bytes > ${LIMITS.maxMessageBytes}`);
    return bytes;
  }

  /** The page's envelope (validated with zod, instances empty) around the joined instances. */
  private envelope(service: string, c: Cached, page: number, body?: Uint8Array): Uint8Array {
    const empty = encode(Snapshot, { v: PROTOCOL_VERSION, kind: "snapshot", service, revision: c.revision, known: c.known, page, pages: c.starts.length, instances: [] }, "snapshot");
    if (!body || body.byteLength === 0) return empty;
    // `instances` is the schema's last key, so the encoded envelope ends with `[]}`.
    const head = empty.byteLength - PAGE_SUFFIX.byteLength;
    const out = new Uint8Array(head + body.byteLength + PAGE_SUFFIX.byteLength);
    out.set(empty.subarray(0, head), 0);
    out.set(body, head);
    out.set(PAGE_SUFFIX, head + body.byteLength);
    return out;
  }

  /** The pages of `service` at its current revision, cut now on a miss. */
  private current(service: string): Cached {
    const c = this.cache.get(service);
    const meta = this.source.serviceRevision(service);
    if (c && c.revision === meta.revision && c.known === meta.known) return c;
    this.encodes++;
    const live = this.source.instancesOf(service);
    let fragments: readonly Fragment[] = [];
    if (live) {
      let f = this.fragments.get(service);
      if (!f) this.fragments.set(service, (f = new ServiceFragments(encodeInstance)));
      fragments = f.sync(live);
    }
    const starts = pageStarts(fragments, this.budget);
    const fresh: Cached = { revision: meta.revision, known: meta.known, fragments, starts, pages: [], bodies: c ? reusableBodies(c, fragments, starts) : [] };
    // Only services the registry knows are cached: a requester looping over made-up names must not grow memory.
    if (c && c.known) this.previous.set(service, c);
    if (meta.known) this.cache.set(service, fresh);
    else {
      this.cache.delete(service);
      this.previous.delete(service);
      this.fragments.delete(service);
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
    this.fragments.clear();
  }
}

/**
 * The joined instances of each page of `old` whose fragments are the same objects at the same
 * place in the new revision: one instance changed leaves the other pages' bytes as they were
 * (a pointer comparison per instance instead of a copy of each).
 */
function reusableBodies(old: Cached, fragments: readonly Fragment[], starts: number[]): Array<Uint8Array | undefined> {
  const out: Array<Uint8Array | undefined> = [];
  for (let p = 0; p < starts.length; p++) {
    const body = old.bodies[p];
    const from = starts[p]!;
    const to = starts[p + 1] ?? fragments.length;
    if (!body || old.starts[p] !== from || (old.starts[p + 1] ?? old.fragments.length) !== to) continue;
    let same = true;
    for (let i = from; i < to && same; i++) same = old.fragments[i] === fragments[i];
    if (same) out[p] = body;
  }
  return out;
}

/** One instance as a snapshot carries it: validated on the way out (zod at the boundary), once per record. */
export function encodeInstance(record: CatalogInstance): Uint8Array {
  return UTF8.encode(JSON.stringify(CatalogInstance.parse(record)));
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
