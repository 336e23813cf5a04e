import { isLoopbackHost, isMetadataOrLinkLocal } from "roster-runtime";
import type { ServiceInput } from "../config.js";

/**
 * What a caller of the local API may ask the agent to run (the config file is the operator's and
 * is not checked here). Default: no exec checks, and http/tcp checks that probe only the
 * instance's own address and port, never a link-local or cloud-metadata address — otherwise
 * anyone who can reach the API could run commands as the agent's user or make it probe any
 * address (SSRF, port scans) and read the verdict in the catalog.
 */
export interface ApiCheckPolicy {
  /** `api.allowExecChecks` */
  allowExecChecks: boolean;
  /** `api.checkTargets`: "instance" (default) or "any" (url, host, port, headers, method as sent). */
  checkTargets: "instance" | "any";
}

export type PolicyVerdict = { ok: true } | { ok: false; code: "ROSTER_EXEC_CHECKS_DISABLED" | "ROSTER_CHECK_TARGET_REFUSED"; message: string };

const bare = (h: string) => h.toLowerCase().replace(/^\[(.*)\]$/, "$1").replace(/\.$/, "");
const TARGET_HINT = 'set api.checkTargets: "any" in the agent\'s config to allow more, or put the check in the config file';
/** Headers that redirect a probe (Host) or unlock metadata services. */
const REFUSED_HEADER = /^(host|metadata|metadata-flavor|x-google-metadata-request|x-aws-ec2-metadata-token(-ttl-seconds)?|x-forwarded-host)$/i;

function refuse(code: "ROSTER_EXEC_CHECKS_DISABLED" | "ROSTER_CHECK_TARGET_REFUSED", message: string): PolicyVerdict {
  return { ok: false, code, message };
}

/** Checks an API registration against the policy. `address` is the instance's resolved address. */
export function checkApiRegistration(input: ServiceInput, address: string, policy: ApiCheckPolicy): PolicyVerdict {
  for (const [i, c] of input.checks.entries()) {
    if (c.type === "exec" && !policy.allowExecChecks) {
      return refuse("ROSTER_EXEC_CHECKS_DISABLED", `checks[${i}]: exec checks cannot be registered through the API: set api.allowExecChecks: true in the agent's config (the API then needs a token), or put the check in the config file`);
    }
  }
  if (policy.checkTargets === "any") return { ok: true };
  const probes = input.checks.filter((c) => c.type === "http" || c.type === "tcp");
  if (probes.length && isMetadataOrLinkLocal(address)) {
    return refuse("ROSTER_CHECK_TARGET_REFUSED", `address ${address} is link-local or a cloud metadata address: API-registered checks may not probe it; ${TARGET_HINT}`);
  }
  const own = bare(address);
  // The instance's own port on this host's loopback is the same probe (what `roster register
  // --check-http http://127.0.0.1:<port>/...` sends): no more reach than registering at 127.0.0.1.
  const ownHost = (h: string) => bare(h) === own || isLoopbackHost(h);
  for (const [i, c] of input.checks.entries()) {
    if (c.type === "tcp") {
      if (c.host !== undefined && !ownHost(c.host)) return refuse("ROSTER_CHECK_TARGET_REFUSED", `checks[${i}].host: API-registered tcp checks probe only the instance's own address (${address}); ${TARGET_HINT}`);
      if (c.port !== undefined && c.port !== input.port) return refuse("ROSTER_CHECK_TARGET_REFUSED", `checks[${i}].port: API-registered tcp checks probe only the instance's own port (${input.port}); ${TARGET_HINT}`);
    } else if (c.type === "http") {
      if (c.method !== "GET" && c.method !== "HEAD") return refuse("ROSTER_CHECK_TARGET_REFUSED", `checks[${i}].method: API-registered http checks use GET or HEAD; ${TARGET_HINT}`);
      const header = Object.keys(c.headers).find((h) => REFUSED_HEADER.test(h));
      if (header !== undefined) return refuse("ROSTER_CHECK_TARGET_REFUSED", `checks[${i}].headers.${header}: API-registered http checks may not set this header; ${TARGET_HINT}`);
      if (c.url !== undefined) {
        const u = new URL(c.url);
        const port = u.port === "" ? (u.protocol === "https:" ? 443 : 80) : Number(u.port);
        if (u.username || u.password || !ownHost(u.hostname) || port !== input.port) {
          return refuse("ROSTER_CHECK_TARGET_REFUSED", `checks[${i}].url: API-registered http checks probe only the instance's own address and port (${address}:${input.port}); use path, or ${TARGET_HINT}`);
        }
      }
    }
  }
  return { ok: true };
}
