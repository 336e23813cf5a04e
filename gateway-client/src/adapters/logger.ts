// The gateway needs no logger; it accepts any pino-compatible one (pino itself, or a
// console shim). Only the four levels below and `child` are used.
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child?(bindings: Record<string, unknown>): Logger;
}

const noop = (): void => {};

export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop };

export function childLogger(logger: Logger | undefined, component: string): Logger {
  if (!logger) return silentLogger;
  return typeof logger.child === "function" ? logger.child({ component }) : logger;
}
