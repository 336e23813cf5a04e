// Public surface of roster-gateway-client.
export { createGateway, Gateway, DEADLINE_HEADER } from "./gateway.js";
export type { GatewayOptions, GatewayEvents, MetricsRegistry, RequestOptions, RequestBody, RequestPlan, TrafficHooks, UpstreamPool, Picked, ServiceStats } from "./gateway.js";
export { GatewayDispatcher } from "./adapters/dispatcher.js";
export type { FetchDispatcher } from "./adapters/dispatcher.js";
export type { PoolFactory, UpstreamPoolOptions } from "./adapters/pools.js";
export { REQUEST_CHANNEL, TRY_START_CHANNEL, TRY_END_CHANNEL } from "./adapters/tracing.js";
export type { RequestChannelMessage, TryChannelMessage, TryKind, TracerProviderLike } from "./adapters/tracing.js";
export { CatalogFollower } from "./adapters/mirror.js";
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
// Traffic policy (docs/traffic-policy.md): errors the request engine throws, and what mirror.policies holds.
export { ThrottledError, LocalRateLimitedError } from "./policy-errors.js";
export type { PolicyView, PolicyMirrorStats } from "./adapters/policy-mirror.js";
export type { PolicyInForce } from "./adapters/policy-runtimes.js";
