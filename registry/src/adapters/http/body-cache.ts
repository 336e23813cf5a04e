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

  /** The body for (service, revision, variant), built by `build` on a miss. */
  get(service: string, revision: number, variant: string, build: () => unknown): Buffer {
    let e = this.byService.get(service);
    if (!e || e.revision !== revision) {
      e = { revision, bodies: new Map() };
      this.byService.set(service, e);
    }
    let body = e.bodies.get(variant);
    if (!body) {
      body = Buffer.from(JSON.stringify(build()));
      if (e.bodies.size < this.maxVariants) e.bodies.set(variant, body);
    }
    return body;
  }

  /** Services with cached bodies (for tests). */
  get size(): number {
    return this.byService.size;
  }
}
