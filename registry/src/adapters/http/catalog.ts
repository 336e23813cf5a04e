import type { FastifyInstance, FastifyReply } from "fastify";
import { z } from "zod";
import { NotReadyError } from "../../errors.js";
import type { BodyCache } from "./body-cache.js";
import type { HttpDeps } from "./server.js";
import { ErrorBody, docSchema } from "./openapi.js";
import { PublicInstance, publicInstance } from "./public-instance.js";

/** `GET /v1/catalog`: every known service (even with no instances left) and the catalog revision. */
export const CatalogDump = z.object({
  revision: z.number().int().nonnegative(),
  services: z.record(z.string(), z.array(PublicInstance)),
});
export type CatalogDump = z.infer<typeof CatalogDump>;


/** BodyCache key of the dump: never a service name (NAME_PATTERN). */
const CATALOG_BODY_KEY = "*catalog";

/**
 * The whole catalog in one answer, for `roster catalog dump`, backups and diffing. One read of the
 * in-memory view: consistent with the deltas like every other route. Not paged: a catalog is a few
 * MB at most (LIMITS), and operators want one document.
 */
export function registerCatalogRoutes(app: FastifyInstance, deps: HttpDeps, bodies?: BodyCache, shedBulk?: (reply: FastifyReply) => void): void {
  app.get(
    "/v1/catalog",
    {
      schema: docSchema({
        summary: "The whole catalog: every known service and its instances, with the catalog revision",
        tags: ["catalog"],
        response: { 200: CatalogDump, 503: ErrorBody },
        description: "503 ROSTER_OVERLOADED with Retry-After while the registry sheds bulk work.",
      }),
    },
    async (_req, reply) => {
      if (deps.loaded && !deps.loaded()) throw new NotReadyError("catalog not loaded from KV yet");
      const revision = deps.catalog.revision;
      if (!bodies?.has(CATALOG_BODY_KEY, revision, "")) shedBulk?.(reply);
      const build = (): CatalogDump => {
        const services: CatalogDump["services"] = {};
        // Sorted by name so two dumps of the same catalog are byte-identical.
        for (const s of [...deps.catalog.services()].sort((a, b) => a.name.localeCompare(b.name))) {
          services[s.name] = [...s.instances].sort((a, b) => a.id.localeCompare(b.id)).map(publicInstance);
        }
        return { revision, services };
      };
      void reply.header("X-Roster-Index", String(revision));
      // Encoded once per catalog revision (the body cache of the instances route): the dump is the
      // largest body the registry serves, and was re-encoded on every request.
      if (!bodies) return build();
      return reply.type("application/json; charset=utf-8").send(bodies.get(CATALOG_BODY_KEY, revision, "", build));
    },
  );
}
