// A forked helper process (IPC) with a promise per awaited message type.
import { fork } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { progress } from "./log.mjs";

/** A forked helper with a promise per awaited message type. */
export function forkHelper(script, args, name, forkOptions = {}) {
  const child = fork(script, args, { stdio: ["ignore", "inherit", "inherit", "ipc"], ...forkOptions });
  const h = { name, child, last: {}, waiters: new Map() };
  child.on("message", (m) => {
    h.last[m.type] = m;
    if (m.type === "error") progress(`${name}: ${m.message}`);
    const w = h.waiters.get(m.type);
    if (w) {
      h.waiters.delete(m.type);
      w.resolve(m);
    }
  });
  h.exited = new Promise((r) => child.once("exit", (code, signal) => r({ code, signal })));
  h.exited.then(({ code, signal }) => {
    for (const w of h.waiters.values()) w.reject(new Error(`${name} exited (${signal ?? code}) while waited on`));
    h.waiters.clear();
  });
  /** The next message of `type` (or the one already received when `seen` is true). */
  h.next = (type, timeoutMs, { seen = false } = {}) => {
    if (seen && h.last[type]) return Promise.resolve(h.last[type]);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        h.waiters.delete(type);
        reject(new Error(`${name}: no "${type}" within ${timeoutMs} ms`));
      }, timeoutMs);
      h.waiters.set(type, { resolve: (m) => (clearTimeout(timer), resolve(m)), reject: (e) => (clearTimeout(timer), reject(e)) });
    });
  };
  h.send = (m) => {
    if (child.connected) child.send(m);
  };
  h.stop = async (cmd) => {
    h.send(cmd);
    await Promise.race([h.exited, sleep(10_000)]);
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  };
  return h;
}

