import { RosterError } from "roster-schemas";

/** Exit codes of `roster` (the table is in cli/README.md). */
export const EXIT = {
  ok: 0,
  /** Any other error: the server refused, answered garbage, a file could not be read. */
  error: 1,
  /** Bad command line: unknown command or flag, missing or invalid value. */
  usage: 2,
  /** The service or instance does not exist. */
  notFound: 3,
  /** The registry or agent could not be reached or did not answer in time. */
  unreachable: 4,
  /** `roster health`: the registry answered but is not ready or is degraded. */
  unhealthy: 5,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** Codes the CLI raises itself; server codes (`ROSTER_SERVICE_NOT_FOUND`, ...) are passed through. */
export const CLI_ERROR_CODES = {
  ROSTER_CLI_USAGE: "the command line is invalid (unknown command or flag, missing or bad value)",
  ROSTER_CLI_UNREACHABLE: "the registry or agent could not be reached (connection refused, DNS, reset)",
  ROSTER_CLI_TIMEOUT: "the registry or agent did not answer within --timeout",
  ROSTER_CLI_BAD_RESPONSE: "the server's answer is not what a Roster registry or agent sends",
  ROSTER_CLI_HTTP: "the server answered an HTTP error without a Roster error body (a proxy?)",
  ROSTER_CLI_FILE: "the --file could not be read or is not valid JSON / YAML",
  ROSTER_CLI_UNHEALTHY: "roster health: the registry is not ready or is degraded",
} as const;
export type CliErrorCode = keyof typeof CLI_ERROR_CODES;

/** Exit code for a server's error code (anything else is 1). */
const EXIT_OF_SERVER_CODE: Record<string, ExitCode> = {
  ROSTER_SERVICE_NOT_FOUND: EXIT.notFound,
  ROSTER_NOT_FOUND: EXIT.notFound,
};

/** An error to print as `roster: CODE: message (hint)` and exit with `exit`. */
export class CliError extends RosterError {
  readonly exit: ExitCode;
  readonly hint: string | undefined;
  /** `path: problem` lines from the server or from validation, printed one per line. */
  readonly issues: string[];
  constructor(code: string, message: string, options: { exit?: ExitCode; hint?: string; issues?: string[]; cause?: unknown } = {}) {
    super(code, message, { cause: options.cause });
    this.exit = options.exit ?? EXIT_OF_SERVER_CODE[code] ?? EXIT.error;
    this.hint = options.hint;
    this.issues = options.issues ?? [];
  }
}

export class UsageError extends CliError {
  /** The command whose usage to print (undefined: the top-level usage). */
  readonly command: string | undefined;
  constructor(message: string, command?: string) {
    super("ROSTER_CLI_USAGE", message, { exit: EXIT.usage });
    this.command = command;
  }
}

/** `roster: CODE: message (hint)` plus one indented line per issue. */
export function formatError(err: CliError): string {
  const head = `roster: ${err.code}: ${err.message}${err.hint ? ` (${err.hint})` : ""}\n`;
  return head + err.issues.map((i) => `  ${i}\n`).join("");
}
