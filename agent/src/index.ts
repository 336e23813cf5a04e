// Public surface of roster-agent: embed an agent (tests, tools) or reuse its config schema.
export { build, type Agent, type AgentDeps } from "./app.js";
export {
  CheckInput,
  ConfigInput,
  ServiceInput,
  loadConfigFile,
  parseConfig,
  parseConfigText,
  resolveInstance,
  sanitizeHostId,
  type AgentConfig,
  type CheckSpec,
  type HostFacts,
  type InstanceSpec,
} from "./config.js";
export { AGENT_ERROR_CODES, AgentError, ConfigError, HTTP_STATUS, type AgentErrorCode } from "./errors.js";
export { HostState, type InstanceView, type Outbound } from "./core/host.js";
export { applyResult, initialCheck, type CheckResult, type CheckRuntime } from "./core/check.js";
export { CheckScheduler } from "./adapters/checks/scheduler.js";
export { NatsLink, type NatsLinkStats } from "./adapters/nats.js";
