import * as grpc from "@grpc/grpc-js";
import { HealthImplementation, type ServingStatus } from "grpc-health-check";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { repoRoot, spawnNode, type ChildProc } from "roster-testkit";

export const XDS_CLIENT = join(repoRoot, "registry/test/fixtures/xds-grpc-client.mjs");
export const XDS_PY_CLIENT = join(repoRoot, "registry/test/fixtures/xds_grpc_client.py");

/** A small gRPC server: /roster.test.Echo/Who answers its name; grpc.health.v1.Health with a settable status. */
export interface EchoServer {
  name: string;
  port: number;
  calls: number;
  setHealth(status: ServingStatus): void;
  close(): Promise<void>;
}

export async function startEchoServer(name: string, healthService = "greeter"): Promise<EchoServer> {
  const server = new grpc.Server();
  const health = new HealthImplementation({ "": "SERVING", [healthService]: "SERVING" });
  health.addToServer(server);
  const out: EchoServer = {
    name,
    port: 0,
    calls: 0,
    setHealth: (status) => health.setStatus(healthService, status),
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())).then(() => server.forceShutdown()),
  };
  const id = (b: Buffer) => b;
  server.register(
    "/roster.test.Echo/Who",
    (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      out.calls++;
      cb(null, Buffer.from(name));
    },
    id,
    id,
    "unary",
  );
  out.port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  return out;
}

/** A gRPC xDS bootstrap file pointing at Roster's ADS server. */
export async function writeBootstrap(xdsPort: number, nodeId = "roster-test-client"): Promise<{ file: string; dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "roster-xds-"));
  const file = join(dir, "bootstrap.json");
  await writeFile(
    file,
    JSON.stringify({
      xds_servers: [{ server_uri: `127.0.0.1:${xdsPort}`, channel_creds: [{ type: "insecure" }], server_features: ["xds_v3"] }],
      node: { id: nodeId, cluster: "roster-tests", locality: { zone: "z1" } },
    }),
  );
  return { file, dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export interface CallLine {
  at: number;
  server?: string;
  error?: string;
}

/** A client process whose JSON lines (one per call) are collected. */
export class CallLog {
  readonly lines: CallLine[] = [];
  private rest = "";
  constructor(readonly proc: ChildProc) {
    proc.proc.stdout?.on("data", (d: Buffer) => {
      const text = this.rest + d.toString();
      const parts = text.split("\n");
      this.rest = parts.pop() ?? "";
      for (const p of parts) {
        if (!p.startsWith("{")) continue;
        try {
          this.lines.push(JSON.parse(p) as CallLine);
        } catch {
          // a partial line from a crash: ignored
        }
      }
    });
  }

  static spawnNode(script: string, args: string[], env: Record<string, string>): CallLog {
    return new CallLog(spawnNode(script, args, { env: { ...process.env, ...env } }));
  }

  /** Calls answered since `from` (epoch ms), by server name. */
  counts(from: number, to = Infinity): Map<string, number> {
    const m = new Map<string, number>();
    for (const l of this.lines) if (l.at >= from && l.at < to && l.server) m.set(l.server, (m.get(l.server) ?? 0) + 1);
    return m;
  }

  lastCallTo(server: string): number {
    for (let i = this.lines.length - 1; i >= 0; i--) if (this.lines[i]!.server === server) return this.lines[i]!.at;
    return 0;
  }

  firstCallTo(server: string, after: number): number | undefined {
    return this.lines.find((l) => l.at >= after && l.server === server)?.at;
  }
}
