import { createHash } from "node:crypto";
import type { CheckStatus, InstanceStatus } from "./messages.js";

const SEVERITY: Record<CheckStatus, number> = { passing: 0, warning: 1, critical: 2 };

/** Worst of a set of check statuses; an instance with no checks is passing. */
export function worstStatus(statuses: Iterable<CheckStatus>): CheckStatus {
  let worst: CheckStatus = "passing";
  for (const s of statuses) if (SEVERITY[s] > SEVERITY[worst]) worst = s;
  return worst;
}

/** An instance's status: draining wins (operator intent), else the worst of its checks. */
export function instanceStatus(draining: boolean, checks: Iterable<{ status: CheckStatus }>): InstanceStatus {
  if (draining) return "draining";
  const list: CheckStatus[] = [];
  for (const c of checks) list.push(c.status);
  return worstStatus(list);
}

export interface DigestEntry {
  service: string;
  id: string;
  status: InstanceStatus;
  address: string;
  port: number;
}

/**
 * Digest of a host's instances carried by every heartbeat: the first 16 hex digits of
 * SHA-256 over the lines `service/id=status@address:port`, sorted, joined by "\n".
 * Any language can compute it; the registry compares it with its own view of the host.
 */
export function instanceDigest(instances: Iterable<DigestEntry>): string {
  const lines: string[] = [];
  for (const i of instances) lines.push(`${i.service}/${i.id}=${i.status}@${i.address}:${i.port}`);
  lines.sort();
  return createHash("sha256").update(lines.join("\n")).digest("hex").slice(0, 16);
}
