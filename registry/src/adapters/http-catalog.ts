import type { FastifyInstance } from "fastify";
import { CatalogInstance } from "@roster/schemas";
import { z } from "zod";
import { NotReadyError } from "../errors.js";
import type { HttpDeps } from "./http.js";

/** The public shape of an instance over HTTP: the stored record without its bookkeeping (as `/v1/services/:name/instances`). */
const PublicInstance = CatalogInstance.omit({ epoch: true, registeredAt: true });

function publicInstance(i: CatalogInstance): z.infer<typeof PublicInstance> {
  const { epoch: _epoch, registeredAt: _registeredAt, ...rest } = i;
  return rest;
}

/** `GET /v1/catalog`: every known service (even with no instances left) and the catalog revision. */
export const CatalogDump = z.object({
  revision: z.number().int().nonnegative(),
  services: z.record(z.string(), z.array(PublicInstance)),
});
export type CatalogDump = z.infer<typeof CatalogDump>;

// fastify's serializer and Ajv want draft-07 without a `$schema` key.
function jsonSchema(schema: z.ZodType): Record<string, unknown> {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, { target: "draft-7", io: "output" }) as Record<string, unknown>;
  return rest;
}

const ErrorBody = z.object({ code: z.string(), message: z.string() });

/**
 * The whole catalog in one answer, for `roster catalog dump`, backups and diffing. One read of the
 * in-memory view: consistent with the deltas like every other route. Not paged: a catalog is a few
 * MB at most (LIMITS), and operators want one document.
 */
export function registerCatalogRoutes(app: FastifyInstance, deps: HttpDeps): void {
  app.get(
    "/v1/catalog",
    {
      schema: {
        summary: "The whole catalog: every known service and its instances, with the catalog revision",
        tags: ["catalog"],
        response: { 200: jsonSchema(CatalogDump), 503: jsonSchema(ErrorBody) },
      },
    },
    async (_req, reply) => {
      if (deps.loaded && !deps.loaded()) throw new NotReadyError("catalog not loaded from KV yet");
      const services: CatalogDump["services"] = {};
      // Sorted by name so two dumps of the same catalog are byte-identical.
      for (const s of [...deps.catalog.services()].sort((a, b) => a.name.localeCompare(b.name))) {
        services[s.name] = [...s.instances].sort((a, b) => a.id.localeCompare(b.id)).map(publicInstance);
      }
      const revision = deps.catalog.revision;
      void reply.header("X-Roster-Index", String(revision));
      return { revision, services };
    },
  );
}
