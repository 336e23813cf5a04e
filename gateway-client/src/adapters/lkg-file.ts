// The last-known-good file: a copy of the mirror on disk, so a process can route while NATS is
// unreachable at start. The file may sit in a directory others can write to (/tmp, a shared
// volume), so it is written the way a hostile neighbour cannot redirect: a randomly named temp
// file created with O_CREAT|O_EXCL|O_NOFOLLOW (never opens an existing file or follows a
// planted symlink), mode 0600, fsynced, renamed over the target (rename replaces a symlink
// at the target instead of following it), then the directory fsynced so the rename survives
// a crash.
import { constants } from "node:fs";
import { mkdir, open, readFile, rename, unlink } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { basename, dirname, join } from "node:path";

const TEMP_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (constants.O_NOFOLLOW ?? 0);

/** Writes `data` to `file` atomically and durably, mode 0600 (see above). */
export async function writeFileSecurely(file: string, data: string | Uint8Array): Promise<void> {
  const dir = dirname(file);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `.${basename(file)}.${randomBytes(12).toString("hex")}.tmp`);
  const fh = await open(tmp, TEMP_FLAGS, 0o600);
  try {
    try {
      await fh.chmod(0o600); // whatever the umask
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await syncDir(dir);
}

async function syncDir(dir: string): Promise<void> {
  let dh;
  try {
    dh = await open(dir, constants.O_RDONLY | (constants.O_DIRECTORY ?? 0));
  } catch {
    return; // platforms that cannot open a directory (Windows): the rename is all we get
  }
  try {
    await dh.sync();
  } catch {
    // some filesystems refuse fsync on a directory (EINVAL): nothing more to do
  } finally {
    await dh.close();
  }
}

/** The file's text, or undefined when it does not exist. */
export async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}
