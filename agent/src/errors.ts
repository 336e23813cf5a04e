import { RosterError } from "roster-schemas";

/**
 * Every error code the agent can raise. Each is documented in agent/README.md (errors table);
 * `test/unit/errors.test.ts` checks that they are unique and documented.
 */
export const AGENT_ERROR_CODES = {
  ROSTER_CONFIG_READ: "the config file could not be read",
  ROSTER_CONFIG_PARSE: "the config file is not valid YAML or JSON",
  ROSTER_CONFIG_INVALID: "the config file does not match the schema",
  ROSTER_BAD_REQUEST: "a local API request body or parameter is invalid",
  ROSTER_NOT_FOUND: "no such instance or check on this host",
  ROSTER_NOT_TTL: "a TTL report was sent for a check that is not a ttl check",
  ROSTER_CONFLICT: "the instance id is already used by another service on this host",
  ROSTER_LIMIT: "a protocol limit would be exceeded (instances per host)",
  ROSTER_SHUTTING_DOWN: "the agent is draining for shutdown and accepts no new instance",
  ROSTER_INTERNAL: "an unexpected error in the agent (a bug): see its log",
} as const;
export type AgentErrorCode = keyof typeof AGENT_ERROR_CODES;

/** HTTP status of each code, in one place, for the local API. */
export const HTTP_STATUS: Record<AgentErrorCode, number> = {
  ROSTER_CONFIG_READ: 400,
  ROSTER_CONFIG_PARSE: 400,
  ROSTER_CONFIG_INVALID: 400,
  ROSTER_BAD_REQUEST: 400,
  ROSTER_NOT_FOUND: 404,
  ROSTER_NOT_TTL: 409,
  ROSTER_CONFLICT: 409,
  ROSTER_LIMIT: 422,
  ROSTER_SHUTTING_DOWN: 503,
  ROSTER_INTERNAL: 500,
};

export class AgentError extends RosterError {
  declare readonly code: AgentErrorCode;
  constructor(code: AgentErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** A config file that cannot be read, parsed or validated. `issues` are `path: problem` lines. */
export class ConfigError extends AgentError {
  readonly file: string;
  readonly issues: string[];
  constructor(
    code: "ROSTER_CONFIG_READ" | "ROSTER_CONFIG_PARSE" | "ROSTER_CONFIG_INVALID",
    file: string,
    issues: string[],
    options?: { cause?: unknown },
  ) {
    super(code, `invalid config ${file}:\n${issues.map((i) => `  ${i}`).join("\n")}`, options);
    this.file = file;
    this.issues = issues;
  }
}
