#!/usr/bin/env node
// Generates the registry's HTTP bearer tokens: one read-only (dashboards, scripts, Prometheus), one
// read-write (operators: `roster host reset`, writes). Writes, mode 0600 in a 0700 directory:
//   <dir>/http-read.token, <dir>/http-write.token   the tokens alone (ROSTER_HTTP_*_TOKEN_FILE, Kubernetes Secret)
//   <dir>/registry-http.env                          ROSTER_HTTP_READ_TOKEN=... and ROSTER_HTTP_WRITE_TOKEN=... (compose env_file, systemd EnvironmentFile)
//   <dir>/client-read.env, <dir>/client-write.env    ROSTER_TOKEN=... for the roster CLI
// Existing tokens are kept (rerunning is safe); --rotate makes new ones. See SECURITY.md.
//
//   node scripts/http-tokens.mjs [--out deploy/secrets] [--rotate]
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";

const USAGE = `usage: node scripts/http-tokens.mjs [--out <dir>] [--rotate]

  --out      directory for the token files (default deploy/secrets), created 0700
  --rotate   make new tokens even when the files exist
`;

let values;
try {
  ({ values } = parseArgs({ options: { out: { type: "string" }, rotate: { type: "boolean" }, help: { type: "boolean", short: "h" } }, strict: true }));
} catch (err) {
  process.stderr.write(`${err.message}\n${USAGE}`);
  process.exit(2);
}
if (values.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const dir = resolve(values.out ?? "deploy/secrets");
mkdirSync(dir, { recursive: true, mode: 0o700 });
chmodSync(dir, 0o700);

const write = (name, text) => {
  const file = join(dir, name);
  writeFileSync(file, text, { mode: 0o600 });
  chmodSync(file, 0o600);
  return file;
};
const token = (scope) => {
  const file = join(dir, `http-${scope}.token`);
  if (!values.rotate && existsSync(file)) {
    const old = readFileSync(file, "utf8").trim();
    if (old.length >= 32) return old;
  }
  const t = randomBytes(32).toString("base64url");
  write(`http-${scope}.token`, `${t}\n`);
  return t;
};
const read = token("read");
const writeToken = token("write");
write("registry-http.env", `ROSTER_HTTP_READ_TOKEN=${read}\nROSTER_HTTP_WRITE_TOKEN=${writeToken}\n`);
write("client-read.env", `ROSTER_TOKEN=${read}\n`);
write("client-write.env", `ROSTER_TOKEN=${writeToken}\n`);
process.stdout.write(`wrote ${dir}/{http-read.token,http-write.token,registry-http.env,client-read.env,client-write.env} (mode 0600)\n`);
