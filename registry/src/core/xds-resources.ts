/**
 * xDS resources built from catalog state (pure: plain objects in the proto3 JSON-ish shape that
 * protobufjs `fromObject` takes with `keepCase`; a nested `google.protobuf.Any` is written as
 * `{ "@type": <type URL>, ...fields }`). One service name is one of each resource: a Listener
 * whose API listener routes every request to the cluster of the same name (what a proxyless gRPC
 * client resolving `xds:///<service>` asks for), that RouteConfiguration, a Cluster of type EDS,
 * and its ClusterLoadAssignment with the instances, their health, zone and weight.
 */
import type { CatalogInstance } from "roster-schemas";

export const TYPE_URL = {
  listener: "type.googleapis.com/envoy.config.listener.v3.Listener",
  route: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
  cluster: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
  endpoint: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
} as const;
export type XdsKind = keyof typeof TYPE_URL;
export const XDS_KINDS: readonly XdsKind[] = ["listener", "route", "cluster", "endpoint"];

/** Type URL → kind (undefined: a type this server does not serve). */
export function kindOf(typeUrl: string): XdsKind | undefined {
  for (const k of XDS_KINDS) if (TYPE_URL[k] === typeUrl) return k;
  return undefined;
}

const HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";

/** envoy.config.core.v3.HealthStatus names. */
export type HealthStatus = "HEALTHY" | "UNHEALTHY" | "DRAINING" | "DEGRADED";

export interface XdsResourceOptions {
  /** How a `warning` instance is served: HEALTHY (default; gRPC clients use only HEALTHY/UNKNOWN) or DEGRADED (Envoy). */
  warningAs: "HEALTHY" | "DEGRADED";
}

/**
 * passing → HEALTHY, warning → HEALTHY or DEGRADED (configured), critical and agent-lost →
 * UNHEALTHY, draining → DRAINING. agent-lost is checked first: it is carried as a reason.
 */
export function healthOf(i: Pick<CatalogInstance, "status" | "reason">, opts: XdsResourceOptions): HealthStatus {
  if (i.reason === "agent-lost") return "UNHEALTHY";
  switch (i.status) {
    case "passing":
      return "HEALTHY";
    case "warning":
      return opts.warningAs;
    case "critical":
      return "UNHEALTHY";
    case "draining":
      return "DRAINING";
  }
}

const ADS_SOURCE = { ads: {}, resource_api_version: "V3" };

export function buildListener(service: string): Record<string, unknown> {
  return {
    name: service,
    api_listener: {
      api_listener: {
        "@type": HCM_TYPE,
        stat_prefix: service,
        rds: { route_config_name: service, config_source: ADS_SOURCE },
        // gRPC requires the router filter last (gRFC A39).
        http_filters: [{ name: "envoy.filters.http.router", typed_config: { "@type": ROUTER_TYPE } }],
      },
    },
  };
}

export function buildRoute(service: string): Record<string, unknown> {
  return {
    name: service,
    virtual_hosts: [{ name: service, domains: ["*"], routes: [{ match: { prefix: "" }, route: { cluster: service } }] }],
  };
}

export function buildCluster(service: string): Record<string, unknown> {
  return {
    name: service,
    type: "EDS",
    eds_cluster_config: { eds_config: ADS_SOURCE, service_name: service },
    connect_timeout: { seconds: 1 },
    lb_policy: "ROUND_ROBIN",
  };
}

/** The endpoints of one service, grouped by zone (locality); an instance without a zone is in locality `{}`. */
export function buildLoadAssignment(service: string, instances: readonly CatalogInstance[], opts: XdsResourceOptions): Record<string, unknown> {
  const byZone = new Map<string, CatalogInstance[]>();
  for (const i of instances) {
    const z = i.zone ?? "";
    let list = byZone.get(z);
    if (!list) byZone.set(z, (list = []));
    list.push(i);
  }
  const zones = [...byZone.keys()].sort();
  return {
    cluster_name: service,
    endpoints: zones.map((zone) => {
      const list = byZone.get(zone)!.slice().sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      let weight = 0;
      for (const i of list) weight += i.weight;
      return {
        locality: zone ? { zone } : {},
        // gRPC ignores localities of weight 0 (and unset): the sum of its endpoints' weights keeps
        // the zones' shares proportional to the instances they hold.
        load_balancing_weight: { value: Math.max(1, weight) },
        lb_endpoints: list.map((i) => ({
          endpoint: { address: { socket_address: { address: i.address, port_value: i.port } }, hostname: i.id },
          health_status: healthOf(i, opts),
          load_balancing_weight: { value: i.weight },
        })),
      };
    }),
  };
}

/** The resource `kind` named `service`, or null when the catalog does not know the service. */
export function buildResource(kind: XdsKind, service: string, view: { known: boolean; instances: readonly CatalogInstance[] }, opts: XdsResourceOptions): Record<string, unknown> | null {
  if (!view.known) return null;
  switch (kind) {
    case "listener":
      return buildListener(service);
    case "route":
      return buildRoute(service);
    case "cluster":
      return buildCluster(service);
    case "endpoint":
      return buildLoadAssignment(service, view.instances, opts);
  }
}
