/**
 * Base of every error Roster throws. `code` is stable (`ROSTER_...`) and documented in the
 * errors table of the package that throws it; the lower error, if any, is in `cause`.
 */
export class RosterError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A message or document failed validation; `issues` are `path: problem` lines. */
export class ValidationError extends RosterError {
  readonly issues: string[];
  constructor(what: string, issues: string[], options?: { cause?: unknown }) {
    super("ROSTER_INVALID", `invalid ${what}: ${issues.join("; ")}`, options);
    this.issues = issues;
  }
}
