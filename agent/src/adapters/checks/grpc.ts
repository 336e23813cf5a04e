import * as grpc from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";
import type { GrpcCheckSpec } from "../../config.js";
import type { CheckResult } from "../../core/check.js";

type HealthClient = grpc.Client & {
  Check(req: { service: string }, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: { status?: string | number }) => void): grpc.ClientUnaryCall;
};
const HealthClient = grpc.makeGenericClientConstructor(healthService, "Health") as unknown as new (address: string, creds: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => HealthClient;

/**
 * gRPC checks: `grpc.health.v1.Health/Check` with a service name (the standard gRPC health
 * protocol, using the service definition of the gRPC team's grpc-health-check package).
 * SERVING is passing; NOT_SERVING, UNKNOWN, SERVICE_UNKNOWN, any RPC error and the timeout are
 * critical. One channel per target, shared by the checks that probe it; a channel reconnects
 * after at most 1 s (grpc-js would otherwise back off up to 2 minutes after a restart of the
 * server, keeping the check critical long after it is back).
 */
export class GrpcProber {
  private readonly clients = new Map<string, HealthClient>();

  private client(spec: GrpcCheckSpec): HealthClient {
    const host = spec.host.includes(":") ? `[${spec.host}]` : spec.host;
    const target = `${host}:${spec.port}`;
    const key = `${spec.tls ? "tls" : "plain"}|${target}`;
    let c = this.clients.get(key);
    if (!c) {
      c = new HealthClient(target, spec.tls ? grpc.credentials.createSsl() : grpc.credentials.createInsecure(), {
        "grpc.initial_reconnect_backoff_ms": 100,
        "grpc.max_reconnect_backoff_ms": 1000,
        "grpc.enable_retries": 0,
        "grpc.primary_user_agent": "roster-agent",
      });
      this.clients.set(key, c);
    }
    return c;
  }

  probe(spec: GrpcCheckSpec, signal?: AbortSignal): Promise<CheckResult> {
    return new Promise((resolve) => {
      let done = false;
      const finish = (r: CheckResult) => {
        if (done) return;
        done = true;
        signal?.removeEventListener("abort", onStop);
        resolve(r);
      };
      const what = spec.service === "" ? "server" : `service "${spec.service}"`;
      const call = this.client(spec).Check({ service: spec.service }, new grpc.Metadata(), { deadline: Date.now() + spec.timeoutMs }, (err, res) => {
        if (err) {
          if (err.code === grpc.status.DEADLINE_EXCEEDED) return finish({ status: "critical", output: `timeout after ${spec.timeoutMs}ms` });
          if (err.code === grpc.status.NOT_FOUND) return finish({ status: "critical", output: `gRPC health: ${what} unknown to the server (NOT_FOUND)` });
          return finish({ status: "critical", output: `gRPC ${grpc.status[err.code] ?? err.code}: ${err.details}`.slice(0, 200) });
        }
        const status = typeof res?.status === "number" ? (["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"][res.status] ?? String(res.status)) : String(res?.status ?? "UNKNOWN");
        finish({ status: status === "SERVING" ? "passing" : "critical", output: `gRPC health ${what}: ${status}` });
      });
      const onStop = () => {
        call.cancel();
        finish({ status: "critical", output: "check stopped" });
      };
      signal?.addEventListener("abort", onStop, { once: true });
    });
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
