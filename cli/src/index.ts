// Public surface of roster-cli: run the CLI in-process (tests, wrappers).
export { run, COMMANDS, USAGE, DEFAULT_AGENT, DEFAULT_REGISTRY, type Io } from "./cli.js";
export { EXIT, CLI_ERROR_CODES, CliError, UsageError, formatError, type CliErrorCode, type ExitCode } from "./errors.js";
export { table, keyValues } from "./core/table.js";
export { assessHealth, type HealthInput, type HealthVerdict } from "./core/health.js";
export { registerBody, type RegisterFlags } from "./core/register.js";
