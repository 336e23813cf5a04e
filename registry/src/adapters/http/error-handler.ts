import type { FastifyInstance, FastifyReply } from "fastify";
import { HTTP_STATUS, httpStatusOf, type RegistryErrorCode } from "../../errors.js";
import { translateHttpError } from "./auth.js";

/**
 * The one error handler of the registry's HTTP listeners (the API and the Consul API): maps a
 * ROSTER_... code to its status, another 4xx to ROSTER_BAD_REQUEST, anything else to a logged
 * ROSTER_INTERNAL whose message is not shown. `onStatus` may add headers for a status.
 */
export function installErrorHandler(app: FastifyInstance, opts: { what: string; onStatus?: (status: number, reply: FastifyReply) => void }): void {
  app.setErrorHandler((fastifyErr, request, reply) => {
    const err = translateHttpError(fastifyErr);
    const e = err as { code?: unknown; statusCode?: unknown; message?: string };
    let code: RegistryErrorCode;
    let status: number;
    if (typeof e.code === "string" && e.code in HTTP_STATUS) {
      code = e.code as RegistryErrorCode;
      status = httpStatusOf(err);
    } else if (typeof e.statusCode === "number" && e.statusCode >= 400 && e.statusCode < 500) {
      code = "ROSTER_BAD_REQUEST";
      status = e.statusCode;
    } else {
      code = "ROSTER_INTERNAL";
      status = 500;
      request.log.error({ err }, `unhandled error in ${opts.what}`);
    }
    opts.onStatus?.(status, reply);
    void reply.code(status).send({ code, message: status === 500 ? "internal error" : (e.message ?? code) });
  });
}
