/** Runs Debian's `dig` (bind9-dnsutils) and parses its answer: a real resolver no one here wrote. */
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface DigRecord {
  name: string;
  ttl: number;
  type: string;
  data: string;
}

export interface DigAnswer {
  status: string;
  flags: string[];
  answer: DigRecord[];
  authority: DigRecord[];
  additional: DigRecord[];
  /** dig's own note when it retried over TCP after a truncated UDP answer. */
  retriedTcp: boolean;
  raw: string;
}

/** Throws a clear error when dig is missing (never a silent skip). */
export async function assertDigInstalled(): Promise<void> {
  try {
    await run("dig", ["-v"]);
  } catch {
    throw new Error("dig is not installed: apt-get install -y bind9-dnsutils (.ci/run does it)");
  }
}

/** `dig @host -p port <args...>`; args are names, types and +options. */
export async function dig(address: string, ...args: string[]): Promise<DigAnswer> {
  const i = address.lastIndexOf(":");
  const host = address.slice(0, i).replace(/^\[(.*)\]$/, "$1");
  const port = address.slice(i + 1);
  const { stdout } = await run("dig", [`@${host}`, "-p", port, "+time=2", "+tries=2", "+norecurse", ...args], { timeout: 15_000 });
  return parseDig(stdout);
}

export function parseDig(raw: string): DigAnswer {
  const status = /status: ([A-Z]+)/.exec(raw)?.[1] ?? "NONE";
  const flags = (/;; flags: ([a-z ]*);/.exec(raw)?.[1] ?? "").trim().split(/\s+/).filter(Boolean);
  const section = (title: string): DigRecord[] => {
    const m = new RegExp(`;; ${title} SECTION:\\n([\\s\\S]*?)(?:\\n\\n|$)`).exec(raw);
    if (!m) return [];
    return m[1]!
      .split("\n")
      .filter((l) => l && !l.startsWith(";"))
      .map((l) => {
        const [name, ttl, , type, ...data] = l.split(/\s+/);
        return { name: name!, ttl: Number(ttl), type: type!, data: data.join(" ") };
      });
  };
  return {
    status,
    flags,
    answer: section("ANSWER"),
    authority: section("AUTHORITY"),
    additional: section("ADDITIONAL"),
    retriedTcp: /Truncated, retrying in TCP mode/.test(raw),
    raw,
  };
}
