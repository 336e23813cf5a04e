import { readFileSync } from "node:fs";
import { agentTokenFileCandidates, isLoopbackHost } from "roster-runtime";

/**
 * The token the local agent generated (see agent/README.md, api.generatedTokenFile), when the
 * agent URL is on this machine and no token was given: the first readable candidate file
 * (env ROSTER_AGENT_TOKEN_FILE, /run/roster/agent-token, ~/.roster/agent-token). Never sent to an
 * agent on another machine. Files are 0600: only the agent's user (or root) can read them.
 */
export function localAgentToken(agentUrl: string, env: Readonly<Record<string, string | undefined>>): string | undefined {
  let host: string;
  try {
    host = new URL(agentUrl).hostname;
  } catch {
    return undefined;
  }
  if (!isLoopbackHost(host)) return undefined;
  for (const file of agentTokenFileCandidates(env)) {
    try {
      const token = readFileSync(file, "utf8").trim();
      if (/^[\x21-\x7e]{16,4096}$/.test(token)) return token;
    } catch {
      // not there, or not ours to read: try the next
    }
  }
  return undefined;
}
