// Public surface of roster-gateway-client.
export { createGateway, Gateway, DEADLINE_HEADER } from "./gateway.js";
export type { GatewayOptions, RequestOptions, RequestBody, Picked, ServiceStats } from "./gateway.js";
export { GatewayDispatcher } from "./adapters/dispatcher.js";
export { CatalogMirror } from "./adapters/mirror.js";
export type { MirrorOptions, MirrorStats, RegistryDegraded, ServiceView, StaleReason } from "./adapters/mirror.js";
export type { Logger } from "./adapters/logger.js";
export { GatewayPolicy, parsePolicy } from "./config.js";
export type { GatewayPolicyInput } from "./config.js";
export type { BalancerOptionsInput } from "./core/service-balancer.js";
export type { BalancerName, Endpoint, EndpointStats, NoHealthyReasons, Outcome } from "./core/types.js";
export {
  RosterError,
  NoHealthyUpstreamError,
  SnapshotTimeoutError,
  UnknownServiceError,
  DeadlineExceededError,
  TryTimeoutError,
  UpstreamError,
  QueueFullError,
  RetryBudgetExhaustedError,
  RequestAbortedError,
  GatewayClosedError,
  InvalidOptionsError,
  ERROR_CODES,
} from "./errors.js";
/** NATS auth from ROSTER_NATS_* env variables, for the `natsAuth` option. */
export { natsAuthFromEnv } from "roster-schemas";
export type { NatsAuthInput } from "roster-schemas";
