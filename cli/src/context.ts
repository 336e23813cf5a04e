import type { Target } from "./client.js";
import type { ExitCode } from "./errors.js";

/** What every command gets: the two servers, the output mode, stdout/stderr. */
export interface Context {
  /** Only the command's `server` is resolved; the other has an empty `baseUrl`. */
  registry: Target;
  agent: Target;
  json: boolean;
  out(text: string): void;
  err(text: string): void;
}

export type OptionSpec = { type: "string" | "boolean"; multiple?: boolean; short?: string };
export type Values = Record<string, string | boolean | string[] | boolean[] | undefined>;

export interface Command {
  name: string;
  /** One line for the top-level help. */
  synopsis: string;
  /** Full `roster <command> --help` text. */
  usage: string;
  options: Record<string, OptionSpec>;
  /** The server it calls: only that one's URL is read and checked. */
  server: "registry" | "agent";
  run(ctx: Context, args: string[], values: Values): Promise<ExitCode>;
}

/** Pretty JSON (2 spaces) and a newline: one document on stdout. */
export function jsonText(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
