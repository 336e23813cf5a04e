import { CatalogInstance } from "roster-schemas";
import { ServiceFragments, joinFragments, type Fragment } from "../../core/instance-fragments.js";
import type { CatalogReader } from "../store/catalog-memory.js";
import { publicInstance } from "./public-instance.js";

/**
 * The JSON bodies of `GET /v1/services/:name/instances`, encoded once per service revision and
 * query. A service's body only changes when its revision does (the ETag already relies on it),
 * and encoding it (JSON.stringify, then string → bytes on the socket) was most of the route's
 * CPU under load: 100 instances, ~30 KB, ~0.5 ms per request (bench/catalog-http.mjs). Bounded:
 * the latest revision per known service, at most `maxVariants` distinct queries each (zone and
 * tag are free text; past the cap a body is encoded and not kept).
 */
export class BodyCache {
  private readonly byService = new Map<string, { revision: number; bodies: Map<string, Buffer> }>();

  constructor(private readonly maxVariants = 16) {}

  /** The body for (service, revision, variant), built by `build` (a value to JSON-encode) on a miss. */
  get(service: string, revision: number, variant: string, build: () => unknown): Buffer {
    return this.getEncoded(service, revision, variant, () => Buffer.from(JSON.stringify(build())));
  }

  /** The body for (service, revision, variant), encoded by `build` on a miss. */
  getEncoded(service: string, revision: number, variant: string, build: () => Buffer): Buffer {
    let e = this.byService.get(service);
    if (!e || e.revision !== revision) {
      e = { revision, bodies: new Map() };
      this.byService.set(service, e);
    }
    let body = e.bodies.get(variant);
    if (!body) {
      body = build();
      if (e.bodies.size < this.maxVariants) e.bodies.set(variant, body);
    }
    return body;
  }

  /** True when the body for (service, revision, variant) is held: serving it is a socket write, not bulk work. */
  has(service: string, revision: number, variant: string): boolean {
    const e = this.byService.get(service);
    return e !== undefined && e.revision === revision && e.bodies.has(variant);
  }

  /** Services with cached bodies (for tests). */
  get size(): number {
    return this.byService.size;
  }
}

const UTF8 = new TextEncoder();
const OPEN = UTF8.encode("[");
const CLOSE = UTF8.encode("]");

/**
 * Each instance's public JSON (`publicInstance`), encoded once per record: a body of a large
 * service after one instance changed costs one encode and a copy of bytes, not an encode of every
 * instance (core/instance-fragments.ts). Bounded by the services the catalog knows.
 */
export class PublicFragments {
  private readonly byService = new Map<string, ServiceFragments>();

  constructor(private readonly catalog: Pick<CatalogReader, "instancesOf">) {}

  /** The public fragments of `service`, sorted by id (none when unknown). */
  of(service: string): readonly Fragment[] {
    const live = this.catalog.instancesOf(service);
    if (!live) return [];
    let f = this.byService.get(service);
    if (!f) this.byService.set(service, (f = new ServiceFragments((r: CatalogInstance) => UTF8.encode(JSON.stringify(publicInstance(r))))));
    return f.sync(live);
  }

  /** A JSON array of the fragments of `service` whose record passes `keep`. */
  body(service: string, keep: (record: CatalogInstance) => boolean): Buffer {
    const joined = joinFragments(OPEN, this.of(service).filter((f) => keep(f.record)), CLOSE);
    return Buffer.from(joined.buffer, joined.byteOffset, joined.byteLength);
  }

  /** Instances encoded so far (tests). */
  get encodes(): number {
    let n = 0;
    for (const f of this.byService.values()) n += f.encodes;
    return n;
  }
}
