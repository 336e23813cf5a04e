/**
 * Roster's catalog in Consul's JSON shapes (field names and types of Consul's api/ Go structs:
 * Node, AgentService, HealthCheck, ServiceEntry, CatalogService). Pure mapping.
 *
 * Mapping: a Roster host is a Consul node; an instance is a service instance; its checks are
 * service checks; the host's liveness is the node check `serfHealth` (critical when agent-lost);
 * `draining` is Consul's service maintenance mode (`_service_maintenance:<id>`, critical).
 * Roster keeps no per-instance index: CreateIndex/ModifyIndex are the service's revision.
 */
import { createHash } from "node:crypto";
import type { CatalogInstance, CheckState } from "roster-schemas";

export type ConsulStatus = "passing" | "warning" | "critical";

export interface ConsulHealthCheck {
  Node: string;
  CheckID: string;
  Name: string;
  Status: ConsulStatus;
  Notes: string;
  Output: string;
  ServiceID: string;
  ServiceName: string;
  ServiceTags: string[];
  Type: string;
  Interval: string;
  Timeout: string;
  ExposedPort: number;
  Definition: Record<string, never>;
  CreateIndex: number;
  ModifyIndex: number;
}

/** A stable UUID-shaped node ID from the host name (Consul node IDs are UUIDs). */
export function nodeId(host: string): string {
  const h = createHash("sha256").update(`roster-host:${host}`).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export function weights(i: CatalogInstance): { Passing: number; Warning: number } {
  return { Passing: i.weight, Warning: Math.max(1, Math.floor(i.weight / 2)) };
}

const CHECK_TYPE: Record<CheckState["type"], string> = { http: "http", tcp: "tcp", ttl: "ttl", exec: "script", grpc: "grpc" };

export function consulNode(i: CatalogInstance, dc: string, index: number) {
  return {
    ID: nodeId(i.host),
    Node: i.host,
    Address: i.address,
    Datacenter: dc,
    TaggedAddresses: { lan: i.address, wan: i.address },
    Meta: i.zone !== undefined ? { zone: i.zone } : {},
    CreateIndex: index,
    ModifyIndex: index,
  };
}

export function agentService(i: CatalogInstance, dc: string, index: number) {
  return {
    ID: i.id,
    Service: i.service,
    Tags: i.tags,
    Meta: i.meta,
    Port: i.port,
    Address: i.address,
    Weights: weights(i),
    EnableTagOverride: false,
    Datacenter: dc,
    CreateIndex: index,
    ModifyIndex: index,
  };
}

function check(i: CatalogInstance, index: number, over: Partial<ConsulHealthCheck> & Pick<ConsulHealthCheck, "CheckID" | "Name" | "Status">): ConsulHealthCheck {
  return {
    Node: i.host,
    Notes: "",
    Output: "",
    ServiceID: i.id,
    ServiceName: i.service,
    ServiceTags: i.tags,
    Type: "",
    Interval: "",
    Timeout: "",
    ExposedPort: 0,
    Definition: {},
    CreateIndex: index,
    ModifyIndex: index,
    ...over,
  };
}

/** The checks Consul would list for this instance: node (serfHealth), maintenance, then service checks. */
export function healthChecks(i: CatalogInstance, index: number): ConsulHealthCheck[] {
  const lost = i.reason === "agent-lost";
  const out: ConsulHealthCheck[] = [
    check(i, index, {
      CheckID: "serfHealth",
      Name: "Serf Health Status",
      Status: lost ? "critical" : "passing",
      Output: lost ? "Agent not live or unreachable (Roster: agent-lost)" : "Agent alive and reachable",
      ServiceID: "",
      ServiceName: "",
      ServiceTags: [],
    }),
  ];
  if (i.status === "draining") {
    out.push(
      check(i, index, {
        CheckID: `_service_maintenance:${i.id}`,
        Name: "Service Maintenance Mode",
        Status: "critical",
        Notes: "Roster: the instance is draining",
        Type: "maintenance",
      }),
    );
  }
  i.checks.forEach((c, n) => {
    out.push(
      check(i, index, {
        CheckID: i.checks.length === 1 ? `service:${i.id}` : `service:${i.id}:${n + 1}`,
        Name: `Service '${i.service}' check ${c.id}`,
        Status: c.status,
        Output: c.output ?? "",
        Type: CHECK_TYPE[c.type],
      }),
    );
  });
  // An instance with no checks of its own still has a status: say it as a check.
  if (i.checks.length === 0 && (i.status === "warning" || i.status === "critical")) {
    out.push(check(i, index, { CheckID: `service:${i.id}`, Name: `Service '${i.service}' status`, Status: i.status }));
  }
  return out;
}

export function allPassing(checks: readonly ConsulHealthCheck[]): boolean {
  return checks.every((c) => c.Status === "passing");
}

/** One entry of GET /v1/health/service/:name. */
export function serviceEntry(i: CatalogInstance, dc: string, index: number) {
  return { Node: consulNode(i, dc, index), Service: agentService(i, dc, index), Checks: healthChecks(i, index) };
}

/** One entry of GET /v1/catalog/service/:name. */
export function catalogService(i: CatalogInstance, dc: string, index: number) {
  const n = consulNode(i, dc, index);
  return {
    ID: n.ID,
    Node: n.Node,
    Address: n.Address,
    Datacenter: dc,
    TaggedAddresses: n.TaggedAddresses,
    NodeMeta: n.Meta,
    ServiceKind: "",
    ServiceID: i.id,
    ServiceName: i.service,
    ServiceTags: i.tags,
    ServiceAddress: i.address,
    ServiceTaggedAddresses: {},
    ServiceWeights: weights(i),
    ServiceMeta: i.meta,
    ServicePort: i.port,
    ServiceEnableTagOverride: false,
    ServiceProxy: { MeshGateway: {}, Expose: {} },
    ServiceConnect: {},
    CreateIndex: index,
    ModifyIndex: index,
  };
}
