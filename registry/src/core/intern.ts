import type { CatalogInstance } from "roster-schemas";

/**
 * Shares equal values that nearly every catalog record repeats: service, zone, status and check
 * strings, tag lists, empty meta. JSON.parse gives each record its own copies, so 100,000
 * instances held 100,000 `["v1"]` arrays, `{}` objects and copies of "passing" (measured with
 * bench/catalog-memory.mjs: see docs/BENCHMARKS.md). Pure; a shared value is frozen, because records
 * are replaced, never mutated (catalog-memory.ts), and a shared one must stay so.
 *
 * Bounded: past `maxEntries` distinct values new ones are not remembered (returned as given), so
 * hostile or ever-changing values (a tag holding a build number) cannot grow it without end.
 */
export class Interner {
  private readonly strings = new Map<string, string>();
  private readonly lists = new Map<string, readonly string[]>();
  private static readonly EMPTY_LIST: readonly string[] = Object.freeze([]);
  private static readonly EMPTY_META: Readonly<Record<string, string>> = Object.freeze({});

  constructor(private readonly maxEntries = 50_000) {}

  string<S extends string>(s: S): S {
    const known = this.strings.get(s);
    if (known !== undefined) return known as S;
    if (this.strings.size < this.maxEntries) this.strings.set(s, s);
    return s;
  }

  /** A list of strings (tags): the shared, frozen copy when one is known. */
  list(l: readonly string[]): string[] {
    if (l.length === 0) return Interner.EMPTY_LIST as string[];
    const key = l.length === 1 ? l[0]! : JSON.stringify(l);
    const known = this.lists.get(key);
    // Compared element by element: a one-tag list's key is the tag itself, which could spell another list's key.
    if (known !== undefined && known.length === l.length && known.every((t, i) => t === l[i])) return known as string[];
    const shared = Object.freeze(l.map((s) => this.string(s)));
    if (this.lists.size < this.maxEntries) this.lists.set(key, shared);
    return shared as string[];
  }

  /**
   * A record read back from KV (the load at start, a standby's mirror) with the values shared that
   * a registered one shares (core/catalog.ts `recordOf`): after a restart or a takeover the catalog
   * holds no more per instance than the writer that registered it. A new object; `r` is not changed.
   */
  record(r: CatalogInstance): CatalogInstance {
    const checks = r.checks.map((c) => ({ ...c, id: this.string(c.id), type: this.string(c.type), status: this.string(c.status) }));
    const shared = { ...r, service: this.string(r.service), host: this.string(r.host), tags: this.list(r.tags), meta: this.meta(r.meta), status: this.string(r.status), checks };
    if (shared.zone !== undefined) shared.zone = this.string(shared.zone);
    return shared;
  }

  /** Meta: the shared empty object when empty; otherwise as given (meta is rarely repeated whole). */
  meta(m: Record<string, string>): Record<string, string> {
    for (const _ in m) return m;
    return Interner.EMPTY_META as Record<string, string>;
  }
}
