import { readFileSync } from "node:fs";
import { createServer } from "node:net";

/**
 * Ports below the kernel's ephemeral range: every `listen(0)` and every outgoing connection of the
 * processes that tests run takes its port from the ephemeral range, so a port handed out from
 * there could be taken between `freePort()` and the bind of the process it is meant for (seen:
 * a registry exiting with EADDRINUSE in a full parallel run). Below the range only other
 * `freePort()` callers compete, and they pick at random.
 */
function portRange(): { low: number; high: number } {
  try {
    const [ephemeralLow] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    if (ephemeralLow !== undefined && ephemeralLow > 20_000) return { low: 10_000, high: ephemeralLow - 1 };
  } catch {
    // Not Linux: fall back to the kernel's choice.
  }
  return { low: 0, high: 0 };
}

const RANGE = portRange();

function tryListen(port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", () => resolve(null));
    srv.listen(port, "127.0.0.1", () => {
      const addr = srv.address();
      const got = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(got));
    });
  });
}

/** A TCP port on 127.0.0.1 that was free a moment ago (bound then released). */
export async function freePort(): Promise<number> {
  if (RANGE.high > RANGE.low) {
    for (let attempt = 0; attempt < 50; attempt++) {
      const candidate = RANGE.low + Math.floor(Math.random() * (RANGE.high - RANGE.low + 1));
      const port = await tryListen(candidate);
      if (port !== null) return port;
    }
  }
  const port = await tryListen(0);
  if (port === null) throw new Error("freePort: cannot bind 127.0.0.1");
  return port;
}
