// roster-runtime: what every Roster process shares that is not the wire contract (that stays in
// roster-schemas). The pino logger factory is the subpath `roster-runtime/logger`, so that a
// library (the gateway client) can use the rest without loading pino.
export { Backoff, retry, type RetryOptions } from "./backoff.js";
export { createBucket, openBucket, replicaCandidates, type OpenBucketOptions, type Replicas } from "./kv.js";
export type { MinimalLogger } from "./log.js";
export { connectWithRetry, type ConnectRetryOptions } from "./nats.js";
export { packageVersion, versionLine } from "./version.js";
export {
  SecretRedactor,
  SECRET_ENV_NAME,
  agentTokenFileCandidates,
  credentialFlags,
  defaultAgentTokenFile,
  isLoopbackHost,
  isMetadataOrLinkLocal,
  logSecurityWarnings,
  secretEnvValues,
  securityWarnings,
  type Listener,
  type WarnLogger,
} from "./security.js";
