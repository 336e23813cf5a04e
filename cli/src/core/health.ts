/** What `roster health` reads from `/readyz` and `/v1/status`. */
export interface HealthInput {
  ready: boolean;
  natsConnected: boolean;
  catalogLoaded: boolean;
  selfPreservation: boolean;
  lostHosts: number;
}

export interface HealthVerdict {
  healthy: boolean;
  /** Why not, one short phrase each (empty when healthy). */
  problems: string[];
}

/**
 * Healthy = ready and not degraded. Self-preservation counts as degraded: the registry is up but
 * has stopped expiring instances because too many hosts went silent at once (a partition?).
 */
export function assessHealth(h: HealthInput): HealthVerdict {
  const problems: string[] = [];
  if (!h.ready) problems.push("not ready");
  if (!h.natsConnected) problems.push("not connected to NATS");
  if (!h.catalogLoaded) problems.push("catalog not loaded from KV");
  if (h.selfPreservation) problems.push(`self-preservation is on (${h.lostHosts} hosts lost): instances are not being expired`);
  return { healthy: problems.length === 0, problems };
}
