/**
 * How every Roster process authenticates to NATS: one zod schema (config file fields and
 * `ROSTER_NATS_*` env), and one function that turns it into @nats-io connect() options.
 * Shared by the agent, the registry and the gateway client so the three cannot drift.
 */
import { accessSync, constants, readFileSync } from "node:fs";
import {
  credsAuthenticator,
  nkeyAuthenticator,
  nkeys,
  tokenAuthenticator,
  usernamePasswordAuthenticator,
  type Authenticator,
  type TlsOptions,
} from "@nats-io/nats-core";
import { z } from "zod";
import { RosterError } from "./errors.js";
import { formatIssues } from "./format.js";

const FilePath = z.string().min(1, { error: "expected a file path" });

/** `true` = TLS with the system CAs; an object adds a CA, a client certificate, or TLS-first. */
export const NatsTls = z.union(
  [
    z.boolean(),
    z.strictObject({
      /** CA bundle (PEM) to verify the server with, instead of the system CAs. */
      caFile: FilePath.optional(),
      /** Client certificate (PEM) for mutual TLS; needs keyFile. */
      certFile: FilePath.optional(),
      keyFile: FilePath.optional(),
      /** TLS before the INFO line (server `handshake_first: true`). */
      handshakeFirst: z.boolean().optional(),
    }),
  ],
  { error: "expected true/false or { caFile, certFile, keyFile, handshakeFirst }" },
);

const SEED_RE = /^SU[A-Z2-7]{56}$/;

/** The auth fields, spread into each component's own `nats` object (beside its `url`). */
export const natsAuthFields = {
  user: z.string().min(1).optional(),
  password: z.string().min(1).optional(),
  passwordFile: FilePath.optional(),
  token: z.string().min(1).optional(),
  tokenFile: FilePath.optional(),
  /** A user nkey seed (`SU...`): the server config names its public key (`U...`). */
  nkeySeed: z.string().regex(SEED_RE, { error: "expected a user nkey seed (58 characters starting with SU)" }).optional(),
  nkeySeedFile: FilePath.optional(),
  /** A `.creds` file (user JWT + seed), for servers run in operator/JWT mode. */
  credsFile: FilePath.optional(),
  tls: NatsTls.optional(),
  /**
   * Subject prefix of this client's reply inboxes (request-reply, JetStream and KV calls), e.g.
   * `_INBOX.agent-host-a`: the generated NATS users may subscribe to their own prefix only, so no
   * other user can read the replies meant for this one (scripts/nats-users.mjs).
   */
  inboxPrefix: z
    .string()
    .regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, { error: 'expected subject tokens without wildcards or spaces, e.g. "_INBOX.agent-host-a"' })
    .max(200)
    .optional(),
};

type AuthFields = { [K in keyof typeof natsAuthFields]?: z.output<(typeof natsAuthFields)[K]> };

/** Refinement for an object holding `natsAuthFields`: one method at most, pairs complete. */
export function refineNatsAuth(v: AuthFields, ctx: z.RefinementCtx): void {
  const issue = (path: string[], message: string) => ctx.addIssue({ code: "custom", path, message });
  const methods: [string, boolean][] = [
    ["user", v.user !== undefined || v.password !== undefined || v.passwordFile !== undefined],
    ["token", v.token !== undefined || v.tokenFile !== undefined],
    ["nkeySeed", v.nkeySeed !== undefined || v.nkeySeedFile !== undefined],
    ["credsFile", v.credsFile !== undefined],
  ];
  const used = methods.filter(([, on]) => on).map(([name]) => name);
  if (used.length > 1) issue([used[1]!], `only one NATS auth method may be set, found ${used.join(" and ")}`);
  if (v.password !== undefined && v.passwordFile !== undefined) issue(["passwordFile"], "set password or passwordFile, not both");
  if (v.token !== undefined && v.tokenFile !== undefined) issue(["tokenFile"], "set token or tokenFile, not both");
  if (v.nkeySeed !== undefined && v.nkeySeedFile !== undefined) issue(["nkeySeedFile"], "set nkeySeed or nkeySeedFile, not both");
  if (v.user === undefined && (v.password !== undefined || v.passwordFile !== undefined)) issue(["user"], "a password needs a user");
  if (v.user !== undefined && v.password === undefined && v.passwordFile === undefined) issue(["password"], "user needs password or passwordFile");
  if (typeof v.tls === "object" && (v.tls.certFile === undefined) !== (v.tls.keyFile === undefined)) {
    issue(["tls", v.tls.certFile === undefined ? "certFile" : "keyFile"], "a client certificate needs both certFile and keyFile");
  }
}

/** A standalone NATS auth block (the gateway client's `natsAuth` option). */
export const NatsAuth = z.strictObject(natsAuthFields).superRefine(refineNatsAuth);
export type NatsAuth = z.output<typeof NatsAuth>;
export type NatsAuthInput = z.input<typeof NatsAuth>;

/** A bad NATS auth setting or an unreadable secret file; `issues` name the field. */
export class NatsAuthError extends RosterError {
  readonly issues: string[];
  constructor(issues: string[], options?: { cause?: unknown }) {
    super("ROSTER_NATS_AUTH_INVALID", `invalid NATS auth settings: ${issues.join("; ")}`, options);
    this.issues = issues;
  }
}

/** Parses a standalone auth block; throws NatsAuthError naming `<prefix>field`. */
export function parseNatsAuth(input: unknown, prefix = ""): NatsAuth {
  const r = NatsAuth.safeParse(input ?? {});
  if (!r.success) throw new NatsAuthError(formatIssues(r.error).map((i) => prefix + i));
  return r.data;
}

/**
 * Auth fields set in the environment (only those present): ROSTER_NATS_USER / _PASSWORD[_FILE],
 * _TOKEN[_FILE], _NKEY_SEED[_FILE], _CREDS, and TLS: ROSTER_NATS_TLS=true, _TLS_CA, _TLS_CERT,
 * _TLS_KEY, and ROSTER_NATS_INBOX_PREFIX. Spread over the config file's `nats` object (env wins).
 */
export function natsAuthFromEnv(env: Readonly<Record<string, string | undefined>>): Record<string, unknown> {
  const fields: Record<string, string | undefined> = {
    user: env.ROSTER_NATS_USER,
    password: env.ROSTER_NATS_PASSWORD,
    passwordFile: env.ROSTER_NATS_PASSWORD_FILE,
    token: env.ROSTER_NATS_TOKEN,
    tokenFile: env.ROSTER_NATS_TOKEN_FILE,
    nkeySeed: env.ROSTER_NATS_NKEY_SEED,
    nkeySeedFile: env.ROSTER_NATS_NKEY_SEED_FILE,
    credsFile: env.ROSTER_NATS_CREDS,
    inboxPrefix: env.ROSTER_NATS_INBOX_PREFIX,
  };
  const out: Record<string, unknown> = {};
  for (const [field, v] of Object.entries(fields)) if (v !== undefined && v !== "") out[field] = v;
  const tls: Record<string, string> = {};
  if (env.ROSTER_NATS_TLS_CA) tls.caFile = env.ROSTER_NATS_TLS_CA;
  if (env.ROSTER_NATS_TLS_CERT) tls.certFile = env.ROSTER_NATS_TLS_CERT;
  if (env.ROSTER_NATS_TLS_KEY) tls.keyFile = env.ROSTER_NATS_TLS_KEY;
  if (Object.keys(tls).length) out.tls = tls;
  else if (env.ROSTER_NATS_TLS !== undefined && env.ROSTER_NATS_TLS !== "") out.tls = /^(1|true|yes|on)$/i.test(env.ROSTER_NATS_TLS);
  return out;
}

/** `"a, b"` or `["a", "b"]` → `["a", "b"]`: every `--nats` accepts a comma-separated list. */
export function splitServers(servers: string | readonly string[]): string[] {
  const list = typeof servers === "string" ? [servers] : servers;
  return list.flatMap((s) => s.split(",")).map((s) => s.trim()).filter(Boolean);
}

/** A server URL fit for a log line: `nats://user:secret@h:4222` → `nats://***@h:4222`. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/)[^@/]*@/i, "$1***@");
}

export function redactServers(servers: string | readonly string[]): string[] {
  return splitServers(servers).map(redactUrl);
}

/** Which method is configured (for a log line; never the secret). */
export function natsAuthMethod(auth: AuthFields): "none" | "user" | "token" | "nkey" | "creds" {
  if (auth.credsFile !== undefined) return "creds";
  if (auth.nkeySeed !== undefined || auth.nkeySeedFile !== undefined) return "nkey";
  if (auth.token !== undefined || auth.tokenFile !== undefined) return "token";
  if (auth.user !== undefined) return "user";
  return "none";
}

export interface NatsConnectOptions {
  servers: string[];
  authenticator?: Authenticator;
  tls?: TlsOptions;
  /** Reply inbox prefix (nats.js uses it for request(), JetStream and KV). */
  inboxPrefix?: string;
}

/**
 * The @nats-io connect() options for `servers` and an already-validated auth block. Secret
 * files are read now (a missing or malformed one throws NatsAuthError naming `<prefix>field`)
 * and again on every reconnect, so a rotated file is picked up without a restart.
 */
export function natsConnectOptions(servers: string | readonly string[], auth: AuthFields = {}, prefix = ""): NatsConnectOptions {
  const issues: string[] = [];
  const readText = (field: string, file: string): string | null => {
    try {
      return readFileSync(file, "utf8").trim();
    } catch (err) {
      issues.push(`${prefix}${field}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      return null;
    }
  };
  /** A getter that re-reads `file` on each (re)connect, falling back to the first good read. */
  const fromFile = (first: string, file: string) => () => {
    try {
      return readFileSync(file, "utf8").trim() || first;
    } catch {
      return first;
    }
  };
  const list = splitServers(servers);
  if (list.length === 0) issues.push(`${prefix}url: expected at least one NATS server URL`);
  const out: NatsConnectOptions = { servers: list };

  if (auth.user !== undefined) {
    const pw = auth.passwordFile !== undefined ? readText("passwordFile", auth.passwordFile) : (auth.password ?? "");
    if (pw !== null) out.authenticator = usernamePasswordAuthenticator(auth.user, auth.passwordFile !== undefined ? fromFile(pw, auth.passwordFile) : pw);
  } else if (auth.token !== undefined || auth.tokenFile !== undefined) {
    const token = auth.tokenFile !== undefined ? readText("tokenFile", auth.tokenFile) : auth.token!;
    if (token === "") issues.push(`${prefix}tokenFile: ${auth.tokenFile} is empty`);
    else if (token !== null) out.authenticator = tokenAuthenticator(auth.tokenFile !== undefined ? fromFile(token, auth.tokenFile) : token);
  } else if (auth.nkeySeed !== undefined || auth.nkeySeedFile !== undefined) {
    const field = auth.nkeySeedFile !== undefined ? "nkeySeedFile" : "nkeySeed";
    const seed = auth.nkeySeedFile !== undefined ? readText(field, auth.nkeySeedFile) : auth.nkeySeed!;
    if (seed !== null) {
      const valid = SEED_RE.test(seed) && (() => {
        try {
          nkeys.fromSeed(new TextEncoder().encode(seed));
          return true;
        } catch {
          return false;
        }
      })();
      if (!valid) issues.push(`${prefix}${field}: not a valid user nkey seed (58 characters starting with SU)`);
      else if (auth.nkeySeedFile !== undefined) {
        const get = fromFile(seed, auth.nkeySeedFile);
        out.authenticator = nkeyAuthenticator(() => new TextEncoder().encode(get()));
      } else out.authenticator = nkeyAuthenticator(new TextEncoder().encode(seed));
    }
  } else if (auth.credsFile !== undefined) {
    const creds = readText("credsFile", auth.credsFile);
    if (creds !== null) {
      if (!/-----BEGIN NATS USER JWT-----/.test(creds) || !/-----BEGIN USER NKEY SEED-----/.test(creds)) {
        issues.push(`${prefix}credsFile: ${auth.credsFile} is not a NATS .creds file (user JWT and nkey seed blocks)`);
      } else {
        const get = fromFile(creds, auth.credsFile);
        out.authenticator = credsAuthenticator(() => new TextEncoder().encode(get()));
      }
    }
  }

  if (auth.tls === true) out.tls = {};
  else if (typeof auth.tls === "object") {
    const tls: TlsOptions = {};
    for (const field of ["caFile", "certFile", "keyFile"] as const) {
      const file = auth.tls[field];
      if (file === undefined) continue;
      try {
        accessSync(file, constants.R_OK);
        tls[field] = file;
      } catch (err) {
        issues.push(`${prefix}tls.${field}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
    }
    if (auth.tls.handshakeFirst) tls.handshakeFirst = true;
    out.tls = tls;
  }
  if (auth.inboxPrefix !== undefined) out.inboxPrefix = auth.inboxPrefix;
  if (issues.length) throw new NatsAuthError(issues);
  return out;
}
