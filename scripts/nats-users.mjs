#!/usr/bin/env node
// Generates Roster's NATS users: one per agent host (publish only on its own host's subjects),
// gateway-client users (read the catalog, ask for snapshots, never write), and the registry
// (the only writer of the catalog bucket). Writes the server include file (accounts block) and
// one secret file + env snippet per user. See deploy/nats/README.md.
//
//   node scripts/nats-users.mjs --hosts host-a,host-b [--gateways 2] [--auth nkey|password]
//        [--out deploy/nats/accounts.inc] [--secrets deploy/nats/secrets]
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { createUser } from "@nats-io/nkeys";

const USAGE = `usage: node scripts/nats-users.mjs --hosts <id,id,...> [options]

  --hosts       agent host ids, comma-separated (the <hostId> token of roster.v1.agent.<hostId>.*)
  --gateways    number of gateway-client users to create (default 1)
  --registries  number of registry users (default 1; replicas may share one)
  --auth        nkey (default) or password (random 32-byte passwords, stored in clear in the include file)
  --out         server include file to write (default deploy/nats/accounts.inc)
  --secrets     directory for the per-user secrets (default: <out dir>/secrets), files mode 0600
`;

// Mirrors schemas/src/limits.ts NAME_PATTERN: a host id is one subject token.
const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;
const P = "roster.v1";

/**
 * Each user's own reply inbox prefix (ROSTER_NATS_INBOX_PREFIX in its env file): it may subscribe
 * to that prefix only, so no user can read replies meant for another (a gateway's snapshot, the
 * registry's JetStream acks). A user name is one subject token (NAME), so the prefix is two.
 */
const inboxOf = (name) => `_INBOX.${name}`;

/** Who may do what. Allow lists deny everything else; the explicit denies document the intent. */
function permissions(role, hostId, name) {
  const inbox = `${inboxOf(name)}.>`;
  switch (role) {
    case "registry":
      // Publishes to every inbox: it answers the clients' snapshot requests.
      return {
        publish: { allow: [`${P}.catalog.>`, `${P}.policy.>`, `${P}.registry.>`, "$JS.API.>", "$KV.roster_catalog.>", "$KV.roster_leader.>", "$KV.roster_policy.>", "$JS.ACK.>", "$JS.FC.>", "_INBOX.>"] },
        subscribe: { allow: [`${P}.>`, inbox] },
      };
    case "agent":
      return {
        publish: { allow: [`${P}.agent.${hostId}.>`], deny: ["$JS.>", "$KV.>"] },
        subscribe: { allow: [`${P}.registry.resync.${hostId}`, `${P}.registry.presence`, inbox] },
      };
    case "gateway":
      return {
        publish: { allow: [`${P}.registry.snapshot.>`, `${P}.registry.policy.>`], deny: ["$JS.>", "$KV.>"] },
        subscribe: { allow: [`${P}.catalog.>`, `${P}.policy.>`, `${P}.registry.presence`, inbox] },
      };
    default:
      throw new Error(`unknown role ${role}`);
  }
}

const q = (s) => JSON.stringify(s);
const list = (xs) => `[${xs.map(q).join(", ")}]`;
function permsConf(p) {
  const side = (s) => `{ allow: ${list(s.allow)}${s.deny ? `, deny: ${list(s.deny)}` : ""} }`;
  return `{ publish: ${side(p.publish)}, subscribe: ${side(p.subscribe)} }`;
}

function makeUser(auth, name, role, hostId) {
  const perms = permissions(role, hostId, name);
  if (auth === "password") {
    const password = randomBytes(32).toString("base64url");
    return {
      name,
      conf: `{ user: ${q(name)}, password: ${q(password)}, permissions: ${permsConf(perms)} }`,
      env: { ROSTER_NATS_USER: name, ROSTER_NATS_PASSWORD: password, ROSTER_NATS_INBOX_PREFIX: inboxOf(name) },
    };
  }
  const kp = createUser();
  const seed = new TextDecoder().decode(kp.getSeed());
  return {
    name,
    conf: `{ nkey: ${q(kp.getPublicKey())}, permissions: ${permsConf(perms)} }`,
    env: { ROSTER_NATS_NKEY_SEED: seed, ROSTER_NATS_INBOX_PREFIX: inboxOf(name) },
    seed,
  };
}

function main() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        hosts: { type: "string" },
        gateways: { type: "string", default: "1" },
        registries: { type: "string", default: "1" },
        auth: { type: "string", default: "nkey" },
        out: { type: "string", default: "deploy/nats/accounts.inc" },
        secrets: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`nats-users: ${err.message}\n${USAGE}`);
    process.exit(2);
  }
  if (values.help) return void process.stdout.write(USAGE);
  const fail = (m) => {
    process.stderr.write(`nats-users: ${m}\n${USAGE}`);
    process.exit(2);
  };
  const hosts = (values.hosts ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  if (hosts.length === 0) fail("--hosts: expected at least one host id");
  for (const h of hosts) if (!NAME.test(h)) fail(`--hosts: "${h}" is not a valid host id (${NAME})`);
  if (new Set(hosts).size !== hosts.length) fail("--hosts: duplicate host id");
  const gateways = Number(values.gateways);
  const registries = Number(values.registries);
  if (!Number.isInteger(gateways) || gateways < 0) fail("--gateways: expected a non-negative integer");
  if (!Number.isInteger(registries) || registries < 1) fail("--registries: expected a positive integer");
  if (values.auth !== "nkey" && values.auth !== "password") fail('--auth: expected "nkey" or "password"');

  const out = resolve(values.out);
  const secrets = resolve(values.secrets ?? join(dirname(out), "secrets"));
  const users = [
    ...Array.from({ length: registries }, (_, i) => makeUser(values.auth, registries === 1 ? "registry" : `registry-${i + 1}`, "registry")),
    ...hosts.map((h) => makeUser(values.auth, `agent-${h}`, "agent", h)),
    ...Array.from({ length: gateways }, (_, i) => makeUser(values.auth, `gateway-${i + 1}`, "gateway")),
  ];

  const conf = [
    `# Generated by scripts/nats-users.mjs (${values.auth}): ${registries} registry, agents ${hosts.join(", ")}, ${gateways} gateway user(s).`,
    "# Regenerate rather than edit; every nats-N.conf includes this file. Secrets are in the --secrets directory.",
    "accounts {",
    "  ROSTER {",
    "    jetstream: enabled",
    "    users: [",
    ...users.map((u) => `      # ${u.name}\n      ${u.conf}`),
    "    ]",
    "  }",
    "}",
    "",
  ].join("\n");
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, conf, { mode: values.auth === "password" ? 0o600 : 0o644 });
  if (values.auth === "password") chmodSync(out, 0o600);

  mkdirSync(secrets, { recursive: true, mode: 0o700 });
  const secret = (file, text) => {
    writeFileSync(join(secrets, file), text, { mode: 0o600 });
    chmodSync(join(secrets, file), 0o600);
  };
  for (const u of users) {
    secret(`${u.name}.env`, Object.entries(u.env).map(([k, v]) => `${k}=${v}`).join("\n") + "\n");
    if (u.seed) secret(`${u.name}.nk`, u.seed + "\n");
  }
  process.stdout.write(`wrote ${out} (${users.length} users) and secrets for ${users.map((u) => u.name).join(", ")} in ${secrets}\n`);
}

main();
