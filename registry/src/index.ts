export { build, type Registry, type RegistryDeps } from "./app.js";
export { RegistryConfig, parseConfig, configFromArgs, splitHostPort, type RegistryConfigInput } from "./config.js";
export {
  ERROR_CODES,
  HTTP_STATUS,
  ConfigError,
  BadRequestError,
  ServiceNotFoundError,
  RouteNotFoundError,
  NotReadyError,
  KvWriteError,
  httpStatusOf,
  type RegistryErrorCode,
} from "./errors.js";
export { CatalogState, sameRecord, type Effect, type CatalogOptions, type AgentInput, type CatalogCounters, type DegradedInfo, type RejectReason } from "./core/catalog.js";
export { CatalogMemory, type CatalogReader, type ServiceView } from "./adapters/store/catalog-memory.js";
export { buildHttp, type HttpDeps, type StatusBody } from "./adapters/http/server.js";
export { decodeAgentMessage, DropLog, type DropCounters, type IngestDropReason } from "./adapters/nats/ingest.js";
export { KvCatalog, type KvCatalogOptions, type KvCatalogStats } from "./adapters/store/kv-catalog.js";
