import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import protobuf from "protobufjs";
import { parse as parseYaml } from "yaml";
import { loadXdsProtos } from "../../src/adapters/xds/protos.js";
import { buildCluster, buildListener, buildLoadAssignment, buildRoute } from "../../src/core/xds-resources.js";

// Envoy cannot be installed here: its config in deploy/envoy is checked against Envoy's own protos
// (the copies shipped with @grpc/grpc-js-xds), strictly: an unknown field, a wrong enum name or a
// wrong shape fails, which protobufjs' fromObject alone would let through.
const root = loadXdsProtos([
  "envoy/config/bootstrap/v3/bootstrap.proto",
  "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
  "envoy/extensions/filters/http/router/v3/router.proto",
  "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
]);
const repo = fileURLToPath(new URL("../../../../", import.meta.url));
const require = createRequire(import.meta.url);

/** proto3 JSON/YAML (as Envoy reads it) → protobufjs object, refusing anything the proto does not define. */
function strict(type: protobuf.Type, obj: unknown, path: string): unknown {
  const name = type.fullName;
  if (name === ".google.protobuf.Duration") {
    const m = typeof obj === "string" ? /^(\d+)(?:\.(\d{1,9}))?s$/.exec(obj) : null;
    if (!m) throw new Error(`${path}: expected a duration like "1s", got ${JSON.stringify(obj)}`);
    return { seconds: Number(m[1]), nanos: Number((m[2] ?? "").padEnd(9, "0")) };
  }
  if (/^\.google\.protobuf\.\w+Value$/.test(name) && (typeof obj !== "object" || obj === null)) return { value: obj };
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) throw new Error(`${path}: expected an object for ${name}`);
  if (name === ".google.protobuf.Any") {
    const { "@type": typeUrl, ...rest } = obj as Record<string, unknown>;
    if (typeof typeUrl !== "string") throw new Error(`${path}: an Any needs "@type"`);
    const inner = root.lookupType(typeUrl.slice(typeUrl.lastIndexOf("/") + 1));
    return { "@type": typeUrl, ...(strict(inner, rest, path) as object) };
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    const f = type.fields[k];
    if (!f) throw new Error(`${path}.${k}: no such field in ${name.slice(1)}`);
    f.resolve();
    const conv = (x: unknown, p: string): unknown => {
      if (f.resolvedType instanceof protobuf.Type) return strict(f.resolvedType, x, p);
      if (f.resolvedType instanceof protobuf.Enum && !(String(x) in f.resolvedType.values)) throw new Error(`${p}: ${String(x)} is not a ${f.resolvedType.name}`);
      return x;
    };
    if (f.map) out[k] = Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([mk, mv]) => [mk, conv(mv, `${path}.${k}.${mk}`)]));
    else if (f.repeated) {
      if (!Array.isArray(v)) throw new Error(`${path}.${k}: expected a list`);
      out[k] = v.map((x, i) => conv(x, `${path}.${k}[${i}]`));
    } else out[k] = conv(v, `${path}.${k}`);
  }
  return out;
}

function validate(typeName: string, doc: unknown): protobuf.Message {
  const type = root.lookupType(typeName);
  const msg = type.fromObject(strict(type, doc, "") as Record<string, unknown>);
  const err = type.verify(msg);
  if (err) throw new Error(err);
  return type.decode(type.encode(msg).finish());
}

describe("xDS deploy - Envoy and gRPC configs", () => {
  const envoy = parseYaml(readFileSync(`${repo}/deploy/envoy/envoy.yaml`, "utf8")) as Record<string, unknown>;

  it("xDS deploy - deploy/envoy/envoy.yaml is a valid Envoy v3 Bootstrap", () => {
    const b = validate("envoy.config.bootstrap.v3.Bootstrap", envoy).toJSON() as {
      dynamic_resources: { ads_config: { api_type: string; grpc_services: Array<{ envoy_grpc: { cluster_name: string } }> }; cds_config: { ads: object } };
      static_resources: { clusters: Array<{ name: string; load_assignment: { endpoints: Array<{ lb_endpoints: Array<{ endpoint: { address: { socket_address: { port_value: number } } } }> }> } }> };
    };
    assert.equal(b.dynamic_resources.ads_config.api_type, "GRPC");
    assert.ok(b.dynamic_resources.cds_config.ads, "clusters come over ADS");
    const adsCluster = b.static_resources.clusters.find((c) => c.name === b.dynamic_resources.ads_config.grpc_services[0]!.envoy_grpc.cluster_name)!;
    assert.equal(adsCluster.load_assignment.endpoints[0]!.lb_endpoints[0]!.endpoint.address.socket_address.port_value, 7702, "the port `npm start` gives xDS");
  });

  it("xDS deploy - the validator refuses an unknown field and a wrong enum", () => {
    const typo = structuredClone(envoy) as { static_resources: { clusters: Array<Record<string, unknown>> } };
    typo.static_resources.clusters[0]!.conect_timeout = "1s";
    assert.throws(() => validate("envoy.config.bootstrap.v3.Bootstrap", typo), /conect_timeout: no such field/);
    const badEnum = structuredClone(envoy) as { dynamic_resources: { ads_config: Record<string, unknown> } };
    badEnum.dynamic_resources.ads_config.api_type = "GRPCX";
    assert.throws(() => validate("envoy.config.bootstrap.v3.Bootstrap", badEnum), /GRPCX is not a ApiType/);
  });

  it("xDS deploy - the routes name clusters Roster serves, and Roster's resources pass the same strict check", () => {
    const text = readFileSync(`${repo}/deploy/envoy/envoy.yaml`, "utf8");
    const agentYaml = readFileSync(`${repo}/examples/agent.yaml`, "utf8");
    for (const m of text.matchAll(/cluster: (\w+), timeout/g)) assert.match(agentYaml, new RegExp(`name: ${m[1]}\\b`), `${m[1]} is a service of examples/agent.yaml`);
    validate("envoy.config.cluster.v3.Cluster", { ...buildCluster("orders"), connect_timeout: "1s" });
    validate("envoy.config.listener.v3.Listener", buildListener("orders"));
    validate("envoy.config.route.v3.RouteConfiguration", buildRoute("orders"));
    const cla = buildLoadAssignment("orders", [{ id: "o1", service: "orders", host: "h", address: "127.0.0.1", port: 1, zone: "z1", tags: [], meta: {}, weight: 5, status: "warning", checks: [], epoch: 1, registeredAt: 0, updatedAt: 0 }], { warningAs: "DEGRADED" });
    validate("envoy.config.endpoint.v3.ClusterLoadAssignment", JSON.parse(JSON.stringify(cla).replace(/\{"value":(\d+)\}/g, "$1")));
  });

  it("xDS deploy - deploy/envoy/grpc-xds-bootstrap.json is a bootstrap @grpc/grpc-js-xds accepts", () => {
    const { validateBootstrapConfig } = require("@grpc/grpc-js-xds/build/src/xds-bootstrap.js") as { validateBootstrapConfig(o: unknown): { xdsServers: Array<{ server_uri: string }> } };
    const boot = validateBootstrapConfig(JSON.parse(readFileSync(`${repo}/deploy/envoy/grpc-xds-bootstrap.json`, "utf8")));
    assert.equal(boot.xdsServers[0]!.server_uri, "127.0.0.1:7702");
    assert.throws(() => validateBootstrapConfig({ xds_servers: [{ server_uri: "x", channel_creds: [{ type: "nope" }] }] }));
  });
});
