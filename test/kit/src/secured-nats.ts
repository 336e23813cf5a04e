// A nats-server with Roster's generated users and permissions (scripts/nats-users.mjs, the same
// script operators run), and self-signed certificates for TLS tests (openssl CLI).
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { connect, type NatsConnection, type Status } from "@nats-io/transport-node";
import { natsConnectOptions } from "roster-schemas";
import { NatsServer } from "./nats-server.js";

/** The repository root (this file runs from test/kit/dist/src/). */
export const repoRoot = resolve(fileURLToPath(new URL(".", import.meta.url)), "..", "..", "..", "..");

export interface SecuredNats {
  server: NatsServer;
  url: string;
  dir: string;
  /** `<dir>/secrets/<user>.nk`: the nkey seed file of `registry`, `agent-<host>`, `gateway-<n>`. */
  seedFile(user: string): string;
  /** The env snippet the script wrote for a user (ROSTER_NATS_*). */
  env(user: string): Promise<Record<string, string>>;
  /** A user's NATS auth block as a config file would hold it: its seed file and its own inbox prefix. */
  auth(user: string): { nkeySeedFile: string; inboxPrefix: string };
  close(): Promise<void>;
}

/** Runs scripts/nats-users.mjs into a temp dir and starts a nats-server including its output. */
export async function startSecuredNats(opts: { hosts: string[]; gateways?: number; auth?: "nkey" | "password"; extraConf?: string }): Promise<SecuredNats> {
  const dir = await mkdtemp(join(tmpdir(), "roster-nats-auth-"));
  const r = spawnSync(
    process.execPath,
    [join(repoRoot, "scripts", "nats-users.mjs"), "--hosts", opts.hosts.join(","), "--gateways", String(opts.gateways ?? 1), "--auth", opts.auth ?? "nkey", "--out", join(dir, "accounts.inc"), "--secrets", join(dir, "secrets")],
    { encoding: "utf8" },
  );
  if (r.status !== 0) throw new Error(`nats-users.mjs failed (${r.status}): ${r.stderr}`);
  const conf = join(dir, "nats.conf");
  await writeFile(conf, `max_payload: 1MB\ninclude "accounts.inc"\n${opts.extraConf ?? ""}\n`);
  const server = await NatsServer.start({ configFile: conf });
  return {
    server,
    get url() {
      return server.url;
    },
    dir,
    seedFile: (user) => join(dir, "secrets", `${user}.nk`),
    auth: (user) => ({ nkeySeedFile: join(dir, "secrets", `${user}.nk`), inboxPrefix: `_INBOX.${user}` }),
    env: async (user) =>
      Object.fromEntries(
        (await readFile(join(dir, "secrets", `${user}.env`), "utf8"))
          .split("\n")
          .filter(Boolean)
          .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
      ),
    close: async () => {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Connects as one of the generated users (by default with `nats.auth(user)`: its seed file and
 * its own inbox prefix; pass `auth` to connect as its env file says) and records the permission
 * violations the server reports, which is how a test sees a refused publish or subscribe.
 */
export async function connectAs(nats: SecuredNats, user: string, auth: Parameters<typeof natsConnectOptions>[1] = nats.auth(user)): Promise<{ nc: NatsConnection; violations: string[] }> {
  const nc = await connect({ ...natsConnectOptions(nats.url, auth), maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  const violations: string[] = [];
  void (async () => {
    for await (const s of nc.status() as AsyncIterable<Status>) {
      if (s.type === "error" && /permissions violation/i.test(String(s.error))) violations.push(String(s.error));
    }
  })();
  return { nc, violations };
}

/** A self-signed certificate for 127.0.0.1 / localhost (EC P-256, 1 day) written into `dir`. */
export function selfSignedCert(dir: string, name = "server"): { certFile: string; keyFile: string } {
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  const r = spawnSync(
    "openssl",
    ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", keyFile, "-out", certFile, "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
    { encoding: "utf8" },
  );
  if (r.error || r.status !== 0) throw new Error(`openssl failed: install the openssl CLI (${r.error?.message ?? r.stderr})`);
  return { certFile, keyFile };
}
