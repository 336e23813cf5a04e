import { CatalogInstance } from "roster-schemas";
import type { z } from "zod";

/** The public shape of an instance over HTTP (the stored record less agent bookkeeping). */
export const PublicInstance = CatalogInstance.omit({ epoch: true, registeredAt: true });
export type PublicInstance = z.infer<typeof PublicInstance>;

export function publicInstance(i: CatalogInstance): PublicInstance {
  return {
    id: i.id,
    service: i.service,
    host: i.host,
    address: i.address,
    port: i.port,
    ...(i.zone !== undefined ? { zone: i.zone } : {}),
    tags: i.tags,
    meta: i.meta,
    weight: i.weight,
    status: i.status,
    ...(i.reason !== undefined ? { reason: i.reason } : {}),
    checks: i.checks,
    updatedAt: i.updatedAt,
  };
}
