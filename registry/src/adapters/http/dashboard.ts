import type { FastifyInstance } from "fastify";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The dashboard's static files (registry/ui), shipped with the package: no build step. */
const UI_DIR = fileURLToPath(new URL("../../../../ui/", import.meta.url));
const FILES: Record<string, string> = {
  "index.html": "text/html; charset=utf-8",
  "app.js": "text/javascript; charset=utf-8",
  "style.css": "text/css; charset=utf-8",
};
// Catalog strings reach the page only as text nodes; the policy also forbids inline script.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** Serves the dashboard at /ui/ (and redirects / and /ui there). Hidden from the OpenAPI document. */
export function registerDashboard(app: FastifyInstance): void {
  const body = new Map(Object.keys(FILES).map((f) => [f, readFileSync(UI_DIR + f)]));
  const hidden = { schema: { hide: true } };
  for (const from of ["/", "/ui"]) app.get(from, hidden, async (_req, reply) => reply.redirect("/ui/"));
  for (const [name, type] of Object.entries(FILES)) {
    const url = name === "index.html" ? "/ui/" : `/ui/${name}`;
    app.get(url, hidden, async (_req, reply) =>
      reply.header("content-type", type).header("cache-control", "no-cache").header("content-security-policy", CSP).header("x-content-type-options", "nosniff").send(body.get(name)),
    );
  }
}
