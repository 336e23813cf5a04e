/**
 * The Envoy v3 protos, loaded with protobufjs from the copies that ship with @grpc/grpc-js-xds
 * (maintained by the gRPC team, the same files its xDS client decodes our answers with); nothing
 * here is written by hand. protobufjs rather than proto-loader's package definition because
 * resources are packed into `google.protobuf.Any`, which needs the message types' encoders.
 */
import { accessSync, constants } from "node:fs";
import { createRequire } from "node:module";
import { dirname, isAbsolute, join } from "node:path";
import protobuf from "protobufjs";

const require = createRequire(import.meta.url);

/** Include directories of the protos shipped in @grpc/grpc-js-xds (its `deps/` folder). */
export function xdsProtoDirs(): string[] {
  const base = join(dirname(require.resolve("@grpc/grpc-js-xds/package.json")), "deps");
  return ["envoy-api", "xds", "googleapis", "protoc-gen-validate"].map((d) => join(base, d));
}

/** What the server encodes: every resource type it serves, and the ADS messages. */
export const SERVER_PROTOS = [
  "envoy/service/discovery/v3/ads.proto",
  "envoy/config/listener/v3/listener.proto",
  "envoy/config/route/v3/route.proto",
  "envoy/config/cluster/v3/cluster.proto",
  "envoy/config/endpoint/v3/endpoint.proto",
  "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
  "envoy/extensions/filters/http/router/v3/router.proto",
];

let descriptorRegistered = false;

/** A protobufjs Root with `files` (and their imports) loaded, field names as in the .proto (snake_case). */
export function loadXdsProtos(files: readonly string[] = SERVER_PROTOS): protobuf.Root {
  if (!descriptorRegistered) {
    // Envoy's protos import descriptor.proto for their options; protobufjs bundles it as JSON.
    const desc = require("protobufjs/google/protobuf/descriptor.json") as { nested: { google: { nested: { protobuf: { nested: protobuf.INamespace["nested"] } } } } };
    protobuf.common("descriptor", desc.nested.google.nested.protobuf.nested as never);
    descriptorRegistered = true;
  }
  const dirs = xdsProtoDirs();
  const root = new protobuf.Root();
  const fallback = root.resolvePath.bind(root);
  root.resolvePath = (origin, target) => {
    if (isAbsolute(target)) return target;
    for (const d of dirs) {
      const p = join(d, target);
      try {
        accessSync(p, constants.R_OK);
        return p;
      } catch {
        // next include directory
      }
    }
    return fallback(origin, target);
  };
  root.loadSync([...files], { keepCase: true });
  root.resolveAll();
  return root;
}
