// Readers for the deploy files (Dockerfile, .dockerignore, systemd units, env files, nats
// configs) and for what the binaries read, used by deploy.test.ts. Deliberately small: each reads
// only the constructs the files in deploy/ use, and fails loudly on anything else.
import { readFileSync } from "node:fs";
import { relative } from "node:path";
import { filesUnder } from "roster-testkit";
import { parseAllDocuments } from "yaml";

/** Every YAML document of a file, as plain JS; throws on any parse error or warning. */
export function readYamlDocs(file: string): unknown[] {
  const docs = parseAllDocuments(readFileSync(file, "utf8"), { merge: true, prettyErrors: true });
  const list = Array.isArray(docs) ? docs : [docs];
  const out: unknown[] = [];
  for (const doc of list) {
    const problems = [...doc.errors, ...doc.warnings];
    if (problems.length) throw new Error(`${file}: ${problems.map((p) => p.message).join("; ")}`);
    const js: unknown = doc.toJS({ maxAliasCount: 100 });
    if (js !== null && js !== undefined) out.push(js);
  }
  return out;
}

export function readYaml<T>(file: string): T {
  const docs = readYamlDocs(file);
  if (docs.length !== 1) throw new Error(`${file}: expected one YAML document, got ${docs.length}`);
  return docs[0] as T;
}

/** The ROSTER_* environment variables a package's sources read (`env.X`, `env["X"]`). */
export function envReadBy(srcDir: string): Set<string> {
  const names = new Set<string>();
  for (const f of filesUnder(srcDir, /\.(ts|mjs|js)$/)) {
    for (const m of readFileSync(f, "utf8").matchAll(/\benv(?:\.|\?\.|\[["'])([A-Z][A-Z0-9_]*)/g)) names.add(m[1]!);
  }
  return names;
}

// ---------------------------------------------------------------------------------------------
// Dockerfile
// ---------------------------------------------------------------------------------------------

export interface DockerStage {
  name: string;
  from: string;
  /** Instructions of this stage only, continuation lines joined: [keyword, rest]. */
  instructions: Array<[string, string]>;
}

export function parseDockerfile(text: string): { args: Map<string, string>; stages: DockerStage[] } {
  const joined = text.replace(/\\\r?\n/g, " ");
  const args = new Map<string, string>();
  const stages: DockerStage[] = [];
  for (const raw of joined.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = /^([A-Za-z]+)\s+(.*)$/.exec(line);
    if (!m) throw new Error(`Dockerfile: cannot read line "${line}"`);
    const keyword = m[1]!.toUpperCase();
    const rest = m[2]!.replace(/\s+/g, " ").trim();
    if (keyword === "FROM") {
      const f = /^(\S+)(?: AS (\S+))?$/i.exec(rest);
      if (!f) throw new Error(`Dockerfile: cannot read FROM ${rest}`);
      stages.push({ name: f[2] ?? String(stages.length), from: f[1]!, instructions: [] });
    } else if (keyword === "ARG" && stages.length === 0) {
      const [k, v] = rest.split("=");
      args.set(k!, v ?? "");
    } else {
      const stage = stages.at(-1);
      if (!stage) throw new Error(`Dockerfile: ${keyword} before the first FROM`);
      stage.instructions.push([keyword, rest]);
    }
  }
  return { args, stages };
}

/** A stage's instructions including those inherited from the stages it is built FROM. */
export function effectiveInstructions(stages: DockerStage[], name: string): Array<[string, string]> {
  const stage = stages.find((s) => s.name === name);
  if (!stage) throw new Error(`Dockerfile: no stage ${name}`);
  const parent = stages.find((s) => s.name === stage.from);
  return [...(parent ? effectiveInstructions(stages, parent.name) : []), ...stage.instructions];
}

/** The last value of an instruction in a stage (inherited ones count), JSON form parsed. */
export function lastInstruction(stages: DockerStage[], name: string, keyword: string): string | undefined {
  return effectiveInstructions(stages, name)
    .filter(([k]) => k === keyword)
    .at(-1)?.[1];
}

export function jsonForm(value: string | undefined, what: string): string[] {
  if (value === undefined) throw new Error(`Dockerfile: no ${what}`);
  const parsed: unknown = JSON.parse(value);
  if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === "string")) throw new Error(`${what}: expected the JSON (exec) form`);
  return parsed as string[];
}

// ---------------------------------------------------------------------------------------------
// .dockerignore: Docker's rules (Go filepath.Match with `**`; a pattern also excludes everything
// under a matching directory; the last matching line wins, `!` re-includes)
// ---------------------------------------------------------------------------------------------

function globToRegExp(pattern: string): RegExp {
  let re = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "*" && pattern[i + 1] === "*") {
      i++;
      if (pattern[i + 1] === "/") {
        i++;
        re += "(?:.*/)?";
      } else re += ".*";
    } else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else re += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

export function dockerIgnored(lines: string[], path: string): boolean {
  const rules = lines
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => {
      const negate = l.startsWith("!");
      const p = (negate ? l.slice(1) : l).replace(/^\/+/, "").replace(/\/+$/, "");
      return { negate, re: globToRegExp(p) };
    });
  const parts = path.split("/");
  let ignored = false;
  for (const rule of rules) {
    for (let n = 1; n <= parts.length; n++) {
      if (rule.re.test(parts.slice(0, n).join("/"))) {
        ignored = !rule.negate;
        break;
      }
    }
  }
  return ignored;
}

// ---------------------------------------------------------------------------------------------
// systemd units and env files
// ---------------------------------------------------------------------------------------------

export type Unit = Map<string, Map<string, string[]>>;

/** `[Section]` → key → every value (a key may repeat). */
export function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) {
      section = new Map();
      unit.set(s[1]!, section);
      continue;
    }
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (!kv || !section) throw new Error(`unit: cannot read line "${line}"`);
    section.set(kv[1]!, [...(section.get(kv[1]!) ?? []), kv[2]!]);
  }
  return unit;
}

/** systemd time span ("30", "30s", "1min 30s", "500ms") in ms. */
export function unitTimeMs(value: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, sec: 1000, m: 60_000, min: 60_000, h: 3_600_000 };
  let total = 0;
  for (const part of value.trim().split(/\s+/)) {
    const m = /^(\d+)(ms|s|sec|m|min|h)?$/.exec(part);
    if (!m) throw new Error(`bad time span "${value}"`);
    total += Number(m[1]) * units[m[2] ?? "s"]!;
  }
  return total;
}

/** KEY=value lines (comments and blanks skipped). */
export function parseEnvFile(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    if (!m) throw new Error(`env file: cannot read line "${line}"`);
    out.set(m[1]!, m[2]!);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// nats-server configs: the few top-level facts the cross-checks need
// ---------------------------------------------------------------------------------------------

export interface NatsConfFacts {
  serverName?: string;
  clientPort: number;
  monitorPort?: number;
  storeDir?: string;
  clusterPort?: number;
  routes: Array<{ host: string; port: number }>;
}

export function natsConfFacts(text: string): NatsConfFacts {
  const noComments = text.replace(/#.*$/gm, "");
  const port = (re: RegExp) => {
    const m = re.exec(noComments);
    return m ? Number(m[1]) : undefined;
  };
  const cluster = /cluster\s*\{([\s\S]*?)\n\}/.exec(noComments)?.[1] ?? "";
  const routes = [...(/routes\s*[:=]?\s*\[([\s\S]*?)\]/.exec(cluster)?.[1] ?? "").matchAll(/nats(?:-route)?:\/\/(?:[^@\s]+@)?([^:\s]+):(\d+)/g)].map(
    (m) => ({ host: m[1]!, port: Number(m[2]) }),
  );
  const facts: NatsConfFacts = {
    clientPort: port(/^\s*(?:listen|port)\s*[:=]\s*(?:[\d.]+:)?(\d+)\s*$/m) ?? 4222,
    routes,
  };
  const name = /^\s*server_name\s*[:=]\s*(\S+)\s*$/m.exec(noComments)?.[1];
  if (name) facts.serverName = name.replace(/^["']|["']$/g, "");
  const monitor = port(/^\s*(?:http|http_port|monitor_port)\s*[:=]\s*(?:[\d.]+:)?(\d+)\s*$/m);
  if (monitor !== undefined) facts.monitorPort = monitor;
  const store = /store_dir\s*[:=]\s*["']?([^\s"']+)/.exec(noComments)?.[1];
  if (store) facts.storeDir = store;
  const clusterPort = /listen\s*[:=]\s*(?:[\d.]+:)?(\d+)/.exec(cluster)?.[1];
  if (clusterPort) facts.clusterPort = Number(clusterPort);
  return facts;
}

export function rel(root: string, p: string): string {
  return relative(root, p);
}
