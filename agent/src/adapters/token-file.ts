import { randomBytes } from "node:crypto";
import { closeSync, constants, fsyncSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";

/**
 * The local API token the agent generates when one is needed and none is configured, in a
 * file only its user can read (0600, directory 0700 when created). A file left by an earlier
 * run is reused when it is safe (a regular file, not a symlink, owned by this user, no group or
 * other access, a token of at least 32 characters), so the CLI keeps working across restarts.
 * Otherwise a new token is written through a randomly named O_EXCL temp file (never through a
 * symlink) that is fsynced and renamed over the old one.
 */
export function ensureTokenFile(file: string): { token: string; created: boolean } {
  const existing = reusable(file);
  if (existing) return { token: existing, created: false };
  const dir = dirname(file);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const token = randomBytes(32).toString("base64url");
  const tmp = join(dir, `.${basename(file)}.${randomBytes(8).toString("hex")}.tmp`);
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    writeSync(fd, `${token}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(tmp, file);
  } catch (err) {
    unlinkSync(tmp);
    throw err;
  }
  return { token, created: true };
}

function reusable(file: string): string | null {
  try {
    const st = lstatSync(file);
    if (!st.isFile() || (st.mode & 0o077) !== 0) return null;
    if (typeof process.getuid === "function" && st.uid !== process.getuid()) return null;
    const token = readFileSync(file, "utf8").trim();
    return /^[A-Za-z0-9_-]{32,}$/.test(token) ? token : null;
  } catch {
    return null;
  }
}
