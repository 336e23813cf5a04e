// The deploy files cannot run here (no Docker engine, no Kubernetes cluster, no systemd as PID 1):
// validate everything that can be validated offline, with the real tools and parsers where they
// exist (compose-spec schema via dclint, Kubernetes schemas via kubernetes-models, nats-server -t,
// systemd-analyze verify, kubectl kustomize, the agent's and registry's own config parsers), and
// cross-check what the files say against what the binaries actually read.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { createServer, type Server } from "node:http";
import { basename, dirname, join, posix, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { DCLinter } from "dclint";
import { validate as validateDockerfile } from "dockerfile-utils";
import * as k8s from "kubernetes-models";
import { parseDocument } from "yaml";
import { parseConfigText as parseAgentConfig, type AgentConfig } from "roster-agent";
import { RegistryConfig, parseConfig as parseRegistryConfig } from "roster-registry";
import { NatsServer, assertNatsServerInstalled, filesUnder, freePort, spawnNode, waitFor } from "roster-testkit";
import {
  dockerIgnored,
  envReadBy,
  jsonForm,
  lastInstruction,
  natsConfFacts,
  parseDockerfile,
  parseEnvFile,
  parseUnit,
  readYaml,
  readYamlDocs,
  unitTimeMs,
  type NatsConfFacts,
} from "./deploy-support.js";

const root = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..");
const deploy = join(root, "deploy");
const k8sDir = join(deploy, "k8s");
const read = (p: string) => readFileSync(p, "utf8");
const has = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: "utf8" }).status === 0;

/** Environment variables each program reads: what a deploy file may set for it. */
// e.g. NATS auth (schemas), the log level and token file (runtime): read for both binaries
const shared = new Set([...envReadBy(join(root, "schemas", "src")), ...envReadBy(join(root, "runtime", "src"))]);
const ENV = {
  registry: new Set([...envReadBy(join(root, "registry", "src")), ...shared, "NODE_ENV"]),
  agent: new Set([...envReadBy(join(root, "agent", "src")), ...shared, "NODE_ENV"]),
  demo: envReadBy(join(root, "examples")),
};
/** HTTP routes the probes may use (checked against the sources below). */
const ROUTES = { registry: { ready: "/readyz", live: "/healthz" }, agent: { live: "/healthz" } };
/** Any address the agent's default-address logic could pick; parsing only, never contacted. */
const FACTS = { defaultAddress: "192.0.2.10", baseDir: "/etc/roster" };

/**
 * Several registries on one catalog need the writer lease (registry/README.md, "Running replicas")
 * wherever the registry has one: without it every replica writes.
 */
function assertReplicasSafe(config: unknown, replicas: number, where: string): void {
  if (replicas < 2) return;
  if (!("lease" in RegistryConfig.shape)) return; // a registry without replicas support: nothing to enable
  const lease = (config as { lease?: { enabled?: boolean } }).lease;
  // On by default (registry/src/config.ts): only an explicit `false` lets every replica write.
  const enabled = lease?.enabled ?? RegistryConfig.parse({}).lease.enabled;
  assert.equal(enabled, true, `${where}: ${replicas} registries share the catalog: the writer lease must stay on ("lease": { "enabled": true })`);
}

/** What a registry's SIGTERM handler allows itself before it forces the exit (registry/src/main.ts). */
function registryForcedExitMs(): number {
  const m = /setTimeout\(\(\) => \{\s*logger\.error\("shutdown took too long[\s\S]*?\},\s*([\d_]+)\)/.exec(read(join(root, "registry", "src", "main.ts")));
  assert.ok(m, "registry/src/main.ts: cannot find the forced-exit timeout");
  return Number(m[1]!.replace(/_/g, ""));
}

function portOf(listen: string): number {
  const m = /:(\d{1,5})$/.exec(listen);
  assert.ok(m, `"${listen}" has no port`);
  return Number(m[1]);
}

function durationMs(s: string): number {
  const m = /^(\d+)(ms|s|m)?$/.exec(s);
  assert.ok(m, `bad duration ${s}`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000 }[m[2] ?? "s"]!;
}

function natsUrlHosts(urls: string): Array<{ host: string; port: number }> {
  return urls.split(",").map((u) => {
    const url = new URL(u.trim());
    assert.equal(url.protocol, "nats:", u);
    return { host: url.hostname, port: Number(url.port || 4222) };
  });
}

describe("deploy", () => {
  it("deploy - the routes the probes use exist in the registry and agent sources", () => {
    const registryHttp = read(join(root, "registry", "src", "adapters", "http", "server.ts"));
    for (const route of Object.values(ROUTES.registry)) assert.match(registryHttp, new RegExp(`app\\.get\\("${route}"`), `registry has no GET ${route}`);
    const agentApi = read(join(root, "agent", "src", "adapters", "api.ts"));
    assert.match(agentApi, new RegExp(`app\\.get\\("${ROUTES.agent.live}"`));
    // The env scan must see what the binaries are documented to read, or every env check is vacuous.
    for (const name of ["ROSTER_NATS_URL", "ROSTER_HTTP", "ROSTER_REGISTRY_CONFIG", "ROSTER_LOG_LEVEL"]) assert.ok(ENV.registry.has(name), name);
    for (const name of ["ROSTER_NATS_URL", "ROSTER_LOG_LEVEL", "ROSTER_HOST_ID", "ROSTER_HOST_ADDRESS"]) assert.ok(ENV.agent.has(name), name);
    assert.ok(ENV.demo.has("DEMO_HOST"));
  });

  it("deploy - every YAML file under deploy/ parses", () => {
    const files = filesUnder(deploy, /\.ya?ml$/);
    assert.ok(files.length >= 8, `only ${files.length} YAML files`);
    for (const f of files) assert.doesNotThrow(() => readYamlDocs(f), f);
  });

  it("deploy - every nats-server config passes the real `nats-server -t`", () => {
    assertNatsServerInstalled();
    const confs = filesUnder(join(deploy, "nats"), /^nats-\d+\.conf$/);
    assert.equal(confs.length, 3, "one config per compose NATS node");
    const k8sConf = join(k8sDir, "config", "nats.conf");
    for (const f of [...confs, k8sConf]) {
      // $POD_NAME is the downward API's in the StatefulSet.
      const r = spawnSync("nats-server", ["-t", "-c", f], { encoding: "utf8", env: { ...process.env, POD_NAME: "nats-0" } });
      assert.equal(r.status, 0, `${f}: ${r.stderr}${r.stdout}`);
    }
    // The check is not vacuous: an unknown field is refused.
    const bad = spawnSync("nats-server", ["-t", "-c", "/dev/stdin"], { input: "listen: 127.0.0.1:4222\nbogus_field: 1\n", encoding: "utf8" });
    assert.notEqual(bad.status, 0);
  });
});

// ---------------------------------------------------------------------------------------------
// docker compose
// ---------------------------------------------------------------------------------------------

interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile?: string; target?: string };
  command?: string[];
  environment?: Record<string, string> | string[];
  env_file?: Array<string | { path: string; required?: boolean }>;
  volumes?: string[];
  ports?: string[];
  depends_on?: string[] | Record<string, { condition: string }>;
  healthcheck?: { test: string[] | string; disable?: boolean };
  restart?: string;
  hostname?: string;
  network_mode?: string;
  stop_grace_period?: string;
}
interface Compose {
  name?: string;
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

/** `environment` plus the env files that exist (an optional one may be absent until generated). */
function envOf(svc: ComposeService): Map<string, string> {
  const fromFiles = new Map<string, string>();
  for (const f of svc.env_file ?? []) {
    const entry = typeof f === "string" ? { path: f, required: true } : f;
    const file = resolve(deploy, entry.path);
    if (existsSync(file)) for (const [k, v] of parseEnvFile(read(file))) fromFiles.set(k, v);
    else assert.equal(entry.required, false, `env_file ${entry.path} is required but missing`);
  }
  const e = svc.environment ?? {};
  if (Array.isArray(e)) return new Map([...fromFiles, ...e.map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)] as [string, string])]);
  return new Map([...fromFiles, ...Object.entries(e).map(([k, v]) => [k, String(v)] as [string, string])]);
}

/** Bind mounts as { source (absolute, on the Docker host), target }; named volumes as { volume, target }. */
function mountsOf(svc: ComposeService): Array<{ source?: string; volume?: string; target: string }> {
  return (svc.volumes ?? []).map((v) => {
    const [src, target] = v.split(":") as [string, string];
    return src.startsWith(".") || src.startsWith("/") ? { source: resolve(deploy, src), target } : { volume: src, target };
  });
}

/** The file on the Docker host that appears at `path` inside the container, if a bind mount provides it. */
function hostFileFor(svc: ComposeService, path: string): string | undefined {
  for (const m of mountsOf(svc)) {
    if (!m.source) continue;
    if (path === m.target) return m.source;
    if (path.startsWith(`${m.target}/`)) return join(m.source, path.slice(m.target.length + 1));
  }
  return undefined;
}

function healthUrl(svc: ComposeService): URL {
  const test = Array.isArray(svc.healthcheck?.test) ? svc.healthcheck.test : [];
  const url = test.find((a) => /^https?:\/\//.test(a));
  assert.ok(url, `healthcheck without a URL: ${JSON.stringify(svc.healthcheck)}`);
  return new URL(url);
}

function optionFlag(args: string[], flag: string): string | undefined {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
}

describe("deploy - docker compose", () => {
  const composeFile = join(deploy, "docker-compose.yml");
  const compose = readYaml<Compose>(composeFile);
  const services = Object.entries(compose.services);
  const byTarget = (target: string) => services.filter(([, s]) => s.build?.target === target);
  const natsServices = services.filter(([, s]) => s.image?.startsWith("nats:"));

  it("deploy - compose: the compose-spec schema (dclint) and its correctness rules pass", () => {
    const rules = {
      "no-duplicate-container-names": 2,
      "no-duplicate-exported-ports": 2,
      "no-unbound-port-interfaces": 2,
      "no-version-field": 2,
      "require-project-name-field": 2,
      "service-image-require-explicit-tag": 2,
      // Style rules, not correctness: off.
      "no-build-and-image": 0,
      "no-quotes-in-volumes": 0,
      "require-quotes-in-ports": 0,
      "service-container-name-regex": 0,
      "service-dependencies-alphabetical-order": 0,
      "service-keys-order": 0,
      "service-ports-alphabetical-order": 0,
      "services-alphabetical-order": 0,
      "top-level-properties-order": 0,
    } as const;
    const linter = new DCLinter({ rules, quiet: true, debug: false, exclude: [] });
    const [result] = linter.lintFiles([composeFile], false);
    assert.ok(result);
    const problems = result.messages.map((m: { line: number; column: number; rule: string; message: string }) => `${m.line}:${m.column} ${m.rule}: ${m.message}`);
    assert.deepEqual(problems, []);
  });

  it("deploy - compose: `docker compose config -q` accepts the file (when the compose plugin is installed)", (t) => {
    if (!has("docker", ["compose", "version"])) {
      t.skip("no docker compose plugin here: the compose-spec schema above stands in for it");
      return;
    }
    const r = spawnSync("docker", ["compose", "-f", composeFile, "config", "-q"], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
  });

  it("deploy - compose: every service has a healthcheck and a restart policy; builds, mounts and volumes exist", () => {
    const dockerfile = parseDockerfile(read(join(deploy, "Dockerfile")));
    for (const [name, svc] of services) {
      assert.ok(svc.healthcheck && !svc.healthcheck.disable && svc.healthcheck.test.length > 0, `${name}: no healthcheck`);
      assert.ok(svc.restart && svc.restart !== "no", `${name}: no restart policy`);
      if (svc.build) {
        const file = join(deploy, svc.build.context, svc.build.dockerfile ?? "Dockerfile");
        assert.equal(file, join(deploy, "Dockerfile"), `${name}: builds from ${file}`);
        assert.ok(dockerfile.stages.some((s) => s.name === svc.build!.target), `${name}: no Dockerfile stage ${svc.build.target}`);
        assert.ok(svc.image, `${name}: a built service names its image so the others can share it`);
      } else {
        assert.match(svc.image ?? "", /^[^:]+:[^:]+$/, `${name}: image without a tag`);
      }
      for (const m of mountsOf(svc)) {
        if (m.source) assert.ok(existsSync(m.source), `${name}: mounts missing ${m.source}`);
        else assert.ok(compose.volumes && m.volume! in compose.volumes, `${name}: volume ${m.volume} is not declared`);
      }
      const deps = Array.isArray(svc.depends_on) ? svc.depends_on : Object.keys(svc.depends_on ?? {});
      for (const d of deps) assert.ok(d in compose.services, `${name}: depends on unknown ${d}`);
      const nm = /^service:(.+)$/.exec(svc.network_mode ?? "");
      if (nm) assert.ok(deps.includes(nm[1]!), `${name}: shares ${nm[1]}'s network, so must depend on it`);
    }
  });

  it("deploy - compose: the NATS nodes form one JetStream cluster from the deploy/nats configs, data in named volumes", () => {
    assert.equal(natsServices.length, 3);
    const names = natsServices.map(([n]) => n);
    for (const [name, svc] of natsServices) {
      const confPath = optionFlag(svc.command ?? [], "-c");
      assert.ok(confPath, `${name}: no -c`);
      const conf = hostFileFor(svc, confPath);
      assert.ok(conf && existsSync(conf), `${name}: ${confPath} is not mounted from a file`);
      assert.equal(dirname(conf), join(deploy, "nats"), `${name}: uses ${conf}, not a deploy/nats config`);
      const facts: NatsConfFacts = natsConfFacts(read(conf));
      assert.equal(facts.serverName, name, `${basename(conf)}: server_name`);
      assert.ok(facts.storeDir, `${basename(conf)}: no JetStream store_dir`);
      const dataVolume = mountsOf(svc).find((m) => m.volume && facts.storeDir!.startsWith(`${m.target}/`));
      assert.ok(dataVolume, `${name}: store_dir ${facts.storeDir} is not on a named volume`);
      assert.deepEqual(facts.routes.map((r) => r.host).sort(), [...names].sort(), `${basename(conf)}: routes`);
      for (const r of facts.routes) assert.equal(r.port, facts.clusterPort, `${basename(conf)}: route port`);
      assert.equal(healthUrl(svc).port, String(facts.monitorPort), `${name}: healthcheck port is not the monitoring port`);
    }
  });

  it("deploy - compose: two registries with the registry's env and config, /readyz healthchecks, published HTTP", () => {
    const registries = byTarget("registry");
    assert.equal(registries.length, 2, "an active registry and a standby replica");
    const [[, first], [, second]] = registries as [[string, ComposeService], [string, ComposeService]];
    assert.deepEqual(envOf(first), envOf(second), "the standby runs with the same config");
    const hostPorts = new Set<string>();
    for (const [name, svc] of registries) {
      const env = envOf(svc);
      for (const k of env.keys()) assert.ok(ENV.registry.has(k), `${name}: the registry does not read ${k}`);
      const httpPort = portOf(env.get("ROSTER_HTTP") ?? "");
      assert.match(env.get("ROSTER_HTTP")!, /^0\.0\.0\.0:/, `${name}: must listen beyond the container's loopback`);
      const url = healthUrl(svc);
      assert.equal(url.pathname, ROUTES.registry.ready);
      assert.equal(Number(url.port), httpPort, `${name}: healthcheck port`);
      const published = (svc.ports ?? []).map((p) => p.split(":"));
      assert.ok(published.some((p) => Number(p.at(-1)) === httpPort), `${name}: HTTP port ${httpPort} not published`);
      for (const p of published) hostPorts.add(p.slice(0, -1).join(":"));
      const cfgPath = env.get("ROSTER_REGISTRY_CONFIG");
      assert.ok(cfgPath);
      const cfgFile = hostFileFor(svc, cfgPath);
      assert.ok(cfgFile && existsSync(cfgFile), `${name}: ${cfgPath} is not mounted from a file`);
      const config = parseRegistryConfig(JSON.parse(read(cfgFile)));
      assert.equal(config.kvReplicas, natsServices.length, "the catalog bucket is replicated on every NATS node");
      assertReplicasSafe(config, registries.length, name);
      for (const h of natsUrlHosts(env.get("ROSTER_NATS_URL") ?? "")) {
        const node = compose.services[h.host];
        assert.ok(node && node.image?.startsWith("nats:"), `${name}: ROSTER_NATS_URL names ${h.host}, not a NATS service`);
        assert.equal(h.port, natsConfFacts(read(hostFileFor(node, optionFlag(node.command ?? [], "-c")!)!)).clientPort);
      }
      assert.ok(unitTimeMs(svc.stop_grace_period ?? "10s") > registryForcedExitMs(), `${name}: stop_grace_period shorter than the registry's own shutdown limit`);
    }
    assert.equal(hostPorts.size, registries.length, "each registry is published on its own host port");
  });

  it("deploy - compose: each host's agent config parses with the agent's parser and matches the demo services beside it", () => {
    const agents = byTarget("agent");
    assert.ok(agents.length >= 2, "at least two hosts");
    const demos = byTarget("demo");
    const hostIds = new Set<string>();
    for (const [name, svc] of agents) {
      const env = envOf(svc);
      for (const k of env.keys()) assert.ok(ENV.agent.has(k), `${name}: the agent does not read ${k}`);
      const cfgPath = optionFlag(svc.command ?? [], "--config");
      assert.ok(cfgPath, `${name}: no --config`);
      const cfgFile = hostFileFor(svc, cfgPath);
      assert.ok(cfgFile && existsSync(cfgFile), `${name}: ${cfgPath} is not mounted from a file`);
      const config: AgentConfig = parseAgentConfig(read(cfgFile), cfgFile, { ...FACTS, hostname: svc.hostname ?? name });
      assert.equal(config.host.id, svc.hostname, `${name}: the host id comes from the container's hostname`);
      hostIds.add(config.host.id);
      const url = healthUrl(svc);
      assert.equal(url.pathname, ROUTES.agent.live);
      assert.equal(Number(url.port), config.api.port, `${name}: healthcheck port is not api.listen's`);
      assert.ok(unitTimeMs(svc.stop_grace_period ?? "10s") > config.drainPeriodMs + 2000, `${name}: stop_grace_period does not cover drain.period`);
      for (const k of natsUrlHosts(env.get("ROSTER_NATS_URL") ?? "")) assert.ok(compose.services[k.host]?.image?.startsWith("nats:"), `${name}: ${k.host}`);
      // Every instance in the config has its demo process in this host's network namespace, and back.
      const beside = demos.filter(([, d]) => d.network_mode === `service:${name}`);
      const running = beside.map(([dn, d]) => {
        const [port, service] = d.command ?? [];
        assert.ok(port && service, `${dn}: command is [port, service]`);
        assert.equal(Number(healthUrl(d).port), Number(port), `${dn}: healthcheck port`);
        for (const k of envOf(d).keys()) assert.ok(ENV.demo.has(k), `${dn}: the demo service does not read ${k}`);
        assert.equal(envOf(d).get("DEMO_HOST"), "0.0.0.0", `${dn}: must listen on the address the agent registers`);
        return `${service}:${port}`;
      });
      assert.deepEqual(running.sort(), config.services.map((s) => `${s.service}:${s.port}`).sort(), `${name}: demo services vs agent config`);
    }
    assert.equal(hostIds.size, agents.length, "host ids are distinct");
  });
});

// ---------------------------------------------------------------------------------------------
// Dockerfile and .dockerignore
// ---------------------------------------------------------------------------------------------

describe("deploy - Dockerfile", () => {
  const { args, stages } = parseDockerfile(read(join(deploy, "Dockerfile")));
  const pkg = JSON.parse(read(join(root, "package.json"))) as { workspaces: string[] };
  const entry = (stage: string) => jsonForm(lastInstruction(stages, stage, "ENTRYPOINT"), `${stage}: ENTRYPOINT`);
  const nodeScript = (stage: string) => {
    const e = entry(stage);
    const i = e.indexOf("node");
    assert.ok(i >= 0 && e[i + 1], `${stage}: ENTRYPOINT does not run node <script>`);
    return e[i + 1]!;
  };

  it("deploy - Dockerfile: the Dockerfile language service (dockerfile-utils) finds no problem", () => {
    const problems = validateDockerfile(read(join(deploy, "Dockerfile"))).map((d) => `${d.range.start.line + 1}: ${d.message}`);
    assert.deepEqual(problems, []);
    // Not vacuous: a misspelt flag is found.
    assert.equal(validateDockerfile("FROM node:20 AS a\nCOPY --frm=a x y\n").length, 1);
  });

  it("deploy - Dockerfile: multi-stage build with npm ci, tsc -b and a dev-dependency prune", () => {
    const build = stages.find((s) => s.name === "build");
    assert.ok(build);
    const runs = build.instructions.filter(([k]) => k === "RUN").map(([, v]) => v).join(" && ");
    assert.match(runs, /npm ci\b/);
    assert.match(runs, /tsc -b\b/);
    assert.match(runs, /npm prune --omit=dev\b/);
    const runtime = stages.find((s) => s.name === "runtime");
    assert.ok(runtime);
    assert.ok(runtime.instructions.some(([k, v]) => k === "COPY" && v.includes("--from=build")), "runtime copies the built tree");
    assert.ok(!runtime.instructions.some(([k, v]) => k === "RUN" && /npm (ci|install)/.test(v)), "no dev install in the runtime stage");
    assert.match(args.get("NODE_IMAGE") ?? "", /^node:\d+-/, "a pinned Node major");
    // A supported LTS line (even major, 22 or later) that the packages' engines accept.
    const major = Number(/^node:(\d+)-/.exec(args.get("NODE_IMAGE") ?? "")?.[1]);
    assert.ok(major >= 22 && major % 2 === 0, `NODE_IMAGE is on Node ${major}, not a supported LTS line`);
    const engines = (JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { engines: { node: string } }).engines.node;
    const min = Number(/^>=(\d+)/.exec(engines)?.[1]);
    assert.ok(major >= min, `NODE_IMAGE Node ${major} is below engines ${engines}`);
  });

  it("deploy - Dockerfile: every image runs node under tini as a non-root user, with a health check", () => {
    for (const target of ["registry", "agent", "cli", "demo"]) {
      assert.ok(stages.some((s) => s.name === target), `no target ${target}`);
      const user = lastInstruction(stages, target, "USER");
      assert.ok(user && user !== "root" && user !== "0", `${target}: runs as ${user ?? "root"}`);
      const e = entry(target);
      assert.equal(e[0], "/usr/bin/tini", `${target}: PID 1 is not tini`);
      assert.equal(e[1], "--");
    }
    const runtimeRuns = stages.find((s) => s.name === "runtime")!.instructions.filter(([k]) => k === "RUN").map(([, v]) => v).join(" ");
    assert.match(runtimeRuns, /apt-get install[^&]*\btini\b/, "tini is installed in the runtime stage");
    // The registry image: its health check asks /readyz on the port it listens on.
    const env = lastInstruction(stages, "registry", "ENV") ?? "";
    const listen = /ROSTER_HTTP=(\S+)/.exec(env)?.[1];
    assert.ok(listen);
    assert.equal(lastInstruction(stages, "registry", "EXPOSE"), String(portOf(listen)));
    assert.match(lastInstruction(stages, "registry", "HEALTHCHECK") ?? "", /CMD \["node", "deploy\/healthcheck\.mjs"\]/);
    assert.match(read(join(deploy, "healthcheck.mjs")), new RegExp(`\\$\\{port\\}${ROUTES.registry.ready}`));
    assert.match(lastInstruction(stages, "agent", "HEALTHCHECK") ?? "", new RegExp(`"http://127\\.0\\.0\\.1:\\d+${ROUTES.agent.live}"`));
  });

  it("deploy - Dockerfile: every workspace bin has an image, and every script an image runs exists", (t) => {
    const scripts = ["registry", "agent", "cli", "demo"].map((s) => [s, nodeScript(s)] as const);
    for (const ws of pkg.workspaces) {
      const wsPkg = JSON.parse(read(join(root, ws, "package.json"))) as { name: string; bin?: Record<string, string> };
      for (const [bin, path] of Object.entries(wsPkg.bin ?? {})) {
        const script = posix.join(ws, path);
        assert.ok(scripts.some(([, s]) => s === script), `bin ${bin} of ${wsPkg.name} (${script}) has no image: add a stage to deploy/Dockerfile`);
      }
    }
    for (const [stage, script] of scripts) {
      const top = script.split("/")[0]!;
      if (!existsSync(join(root, top)) && !pkg.workspaces.includes(top)) {
        // The cli/ workspace is built on another branch: its stage is ready for it.
        t.diagnostic(`${stage}: ${script} not in this tree yet`);
        continue;
      }
      assert.ok(existsSync(join(root, script)), `${stage}: ${script} does not exist`);
    }
  });

  it("deploy - .dockerignore: keeps out node_modules and build output, keeps everything the image needs", () => {
    const lines = read(join(root, ".dockerignore")).split(/\r?\n/);
    for (const p of ["node_modules", "agent/node_modules/x", "registry/dist/src/main.js", ".git/HEAD", "dist-test/x.js", "agent/tsconfig.tsbuildinfo"]) {
      assert.ok(dockerIgnored(lines, p), `${p} is sent to the build`);
    }
    const needed = ["package.json", "package-lock.json", "tsconfig.json", "tsconfig.base.json", "deploy/healthcheck.mjs", "examples/demo-service.mjs"];
    for (const ws of pkg.workspaces) needed.push(`${ws}/package.json`, `${ws}/tsconfig.json`, `${ws}/src/index.ts`);
    for (const [stage] of [["registry"], ["agent"], ["demo"]] as const) needed.push(nodeScript(stage));
    const tsconfig = JSON.parse(read(join(root, "tsconfig.json"))) as { references: Array<{ path: string }> };
    for (const r of tsconfig.references) needed.push(`${r.path}/tsconfig.json`);
    for (const p of needed) {
      if (existsSync(join(root, p))) assert.ok(!dockerIgnored(lines, p), `${p} is excluded from the build context`);
    }
    // The matcher itself: a directory pattern covers its files; a later `!` re-includes.
    assert.ok(dockerIgnored(["deploy", "!deploy/a"], "deploy/b"));
    assert.ok(!dockerIgnored(["deploy", "!deploy/a"], "deploy/a"));
  });

  describe("deploy - healthcheck.mjs (the images' probe)", () => {
    let server: Server;
    let port: number;
    let status = 200;
    const HEALTH = join(deploy, "healthcheck.mjs");
    const run = async (args: string[], env: Record<string, string> = {}) => {
      const p = spawnNode(HEALTH, args, { env: { ...process.env, ...env } });
      return (await p.exited).code;
    };

    before(async () => {
      server = createServer((req, res) => {
        res.writeHead(req.url === "/readyz" ? status : 404).end();
      });
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      port = (server.address() as { port: number }).port;
    });
    after(() => new Promise<void>((r) => server.close(() => r())));

    it("deploy - healthcheck: 2xx is healthy; 503, 404 and a closed port are not; the default URL follows ROSTER_HTTP", async () => {
      status = 200;
      const closed = await freePort();
      assert.deepEqual(
        await Promise.all([
          run([`http://127.0.0.1:${port}/readyz`]),
          run([], { ROSTER_HTTP: `0.0.0.0:${port}` }),
          run([`http://127.0.0.1:${port}/other`]),
          run([`http://127.0.0.1:${closed}/readyz`]),
        ]),
        [0, 0, 1, 1],
      );
      status = 503;
      assert.equal(await run([], { ROSTER_HTTP: `0.0.0.0:${port}` }), 1);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------------------------

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
}
interface Probe {
  httpGet?: { path: string; port: number | string; host?: string };
}
interface Container {
  name: string;
  image: string;
  args?: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string }; secretKeyRef?: { name: string; key: string; optional?: boolean } } }>;
  ports?: Array<{ name?: string; containerPort: number }>;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  volumeMounts?: Array<{ name: string; mountPath: string }>;
  securityContext?: { allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean };
}
interface PodSpec {
  containers: Container[];
  volumes?: Array<{ name: string; configMap?: { name: string }; emptyDir?: object }>;
  hostNetwork?: boolean;
  dnsPolicy?: string;
  terminationGracePeriodSeconds?: number;
  securityContext?: { runAsNonRoot?: boolean };
}
interface Workload extends K8sObject {
  spec: { replicas?: number; serviceName?: string; selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string> }; spec: PodSpec } };
}
interface Kustomization {
  namespace?: string;
  resources: string[];
  configMapGenerator?: Array<{ name: string; files: string[] }>;
  images?: Array<{ name: string; newName?: string; newTag?: string }>;
}

/** kubernetes-models class for an apiVersion/kind (e.g. apps/v1 Deployment → k8s.apps.v1.Deployment). */
function modelFor(apiVersion: string, kind: string): (new (data: object) => { validate(): void }) | undefined {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  // The package's namespaces: core "v1" → k8s.v1; "apps" → k8s.apps; "networking.k8s.io" → k8s.networkingK8sIo.
  const groupKey = group ? group.replace(/\.(\w)/g, (_, c: string) => c.toUpperCase()) : version!;
  const ns = (k8s as unknown as Record<string, Record<string, Record<string, unknown>>>)[groupKey];
  const mod = group ? ns?.[version!] : ns;
  return (mod as Record<string, unknown> | undefined)?.[kind] as (new (data: object) => { validate(): void }) | undefined;
}

function envValue(c: Container, name: string): string | undefined {
  return c.env?.find((e) => e.name === name)?.value;
}

describe("deploy - Kubernetes", () => {
  const kustomization = readYaml<Kustomization>(join(k8sDir, "kustomization.yaml"));
  const objects = kustomization.resources.flatMap((r) => readYamlDocs(join(k8sDir, r)) as K8sObject[]);
  const generated = new Map((kustomization.configMapGenerator ?? []).map((g) => [g.name, g]));
  const generatedFile = (cm: string, key: string) => {
    const entry = generated.get(cm)?.files.find((f) => f.split("=")[0] === key);
    assert.ok(entry, `ConfigMap ${cm} has no key ${key}`);
    return join(k8sDir, entry.includes("=") ? entry.split("=")[1]! : entry);
  };
  const find = <T extends K8sObject>(kind: string, name: string) => {
    const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
    assert.ok(o, `no ${kind} ${name}`);
    return o as T;
  };
  const nats = find<Workload>("StatefulSet", "nats");
  const registry = find<Workload>("Deployment", "roster-registry");
  const agent = find<Workload>("DaemonSet", "roster-agent");
  const natsConf = natsConfFacts(read(generatedFile(nats.spec.template.spec.volumes!.find((v) => v.configMap)!.configMap!.name, "nats.conf")));

  /** The file a container sees at `path`, through a volume from a generated ConfigMap. */
  function configFile(w: Workload, c: Container, path: string): string {
    const mount = c.volumeMounts?.find((m) => path.startsWith(`${m.mountPath}/`));
    assert.ok(mount, `${w.metadata.name}: nothing mounted at ${path}`);
    const vol = w.spec.template.spec.volumes?.find((v) => v.name === mount.name);
    assert.ok(vol?.configMap, `${w.metadata.name}: ${mount.name} is not a ConfigMap volume`);
    return generatedFile(vol.configMap.name, path.slice(mount.mountPath.length + 1));
  }

  it("deploy - k8s: every object passes the Kubernetes JSON schema (kubernetes-models) with a stable API version", () => {
    assert.ok(objects.length >= 8);
    for (const o of objects) {
      assert.doesNotMatch(o.apiVersion, /alpha|beta/, `${o.kind} ${o.metadata?.name}: ${o.apiVersion} is not stable`);
      const Model = modelFor(o.apiVersion, o.kind);
      assert.ok(Model, `no schema for ${o.apiVersion} ${o.kind}`);
      assert.doesNotThrow(() => new Model(o).validate(), `${o.kind} ${o.metadata.name}`);
    }
    // The schemas are not vacuous: a wrong type is refused.
    const Deployment = modelFor("apps/v1", "Deployment")!;
    assert.throws(() => new Deployment({ ...registry, spec: { ...registry.spec, replicas: "2" } }).validate());
  });

  it("deploy - k8s: kustomization files exist; Services, PDBs and volumes point at real pods, ports and ConfigMaps", () => {
    for (const r of kustomization.resources) assert.ok(existsSync(join(k8sDir, r)), r);
    for (const g of generated.values()) for (const f of g.files) assert.ok(existsSync(join(k8sDir, f.split("=").at(-1)!)), f);
    const workloads = objects.filter((o) => ["Deployment", "StatefulSet", "DaemonSet"].includes(o.kind)) as Workload[];
    for (const w of workloads) {
      const labels = w.spec.template.metadata.labels;
      for (const [k, v] of Object.entries(w.spec.selector.matchLabels)) assert.equal(labels[k], v, `${w.metadata.name}: selector does not match its pods`);
      for (const v of w.spec.template.spec.volumes ?? []) if (v.configMap) assert.ok(generated.has(v.configMap.name), `${w.metadata.name}: ConfigMap ${v.configMap.name} is not generated`);
      assert.equal(w.spec.template.spec.securityContext?.runAsNonRoot, true, `${w.metadata.name}: runAsNonRoot`);
      for (const c of w.spec.template.spec.containers) {
        assert.ok(c.readinessProbe?.httpGet && c.livenessProbe?.httpGet, `${w.metadata.name}/${c.name}: readiness and liveness probes`);
        assert.ok(c.resources?.requests && c.resources.limits?.memory, `${w.metadata.name}/${c.name}: resources`);
        assert.equal(c.securityContext?.allowPrivilegeEscalation, false);
        for (const p of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
          const port = p?.httpGet?.port;
          if (typeof port === "string") assert.ok(c.ports?.some((x) => x.name === port), `${w.metadata.name}: probe port ${port} is not a named port`);
        }
        const claims = ((w.spec as { volumeClaimTemplates?: Array<{ metadata: { name: string } }> }).volumeClaimTemplates ?? []).map((t) => t.metadata.name);
        for (const m of c.volumeMounts ?? []) {
          assert.ok(w.spec.template.spec.volumes?.some((v) => v.name === m.name) || claims.includes(m.name), `${w.metadata.name}: volume ${m.name}`);
        }
      }
    }
    for (const svc of objects.filter((o) => o.kind === "Service")) {
      const spec = svc.spec as { selector: Record<string, string>; ports: Array<{ port: number; targetPort: string | number }> };
      const target = workloads.find((w) => Object.entries(spec.selector).every(([k, v]) => w.spec.template.metadata.labels[k] === v));
      assert.ok(target, `Service ${svc.metadata.name} selects no pods`);
      const ports = target.spec.template.spec.containers.flatMap((c) => c.ports ?? []);
      for (const p of spec.ports) {
        assert.ok(ports.some((x) => x.name === p.targetPort || x.containerPort === p.targetPort), `Service ${svc.metadata.name}: targetPort ${p.targetPort}`);
      }
    }
    for (const pdb of objects.filter((o) => o.kind === "PodDisruptionBudget")) {
      const sel = (pdb.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels;
      assert.ok(workloads.some((w) => Object.entries(sel).every(([k, v]) => w.spec.template.metadata.labels[k] === v)), `PDB ${pdb.metadata.name} selects no pods`);
    }
    assert.ok(objects.some((o) => o.kind === "PodDisruptionBudget" && o.metadata.name === "roster-registry"));
  });

  it("deploy - k8s: NATS is a 3-node JetStream StatefulSet behind a headless Service, with routes to its own pods", () => {
    assert.equal(nats.spec.replicas, 3);
    const svc = find("Service", nats.spec.serviceName!);
    assert.equal((svc.spec as { clusterIP?: string }).clusterIP, "None", "the StatefulSet's Service is headless");
    const pods = Array.from({ length: nats.spec.replicas }, (_, i) => `${nats.metadata.name}-${i}.${svc.metadata.name}`);
    assert.deepEqual(natsConf.routes.map((r) => r.host).sort(), pods, "nats.conf routes name the StatefulSet's pods");
    const c = nats.spec.template.spec.containers[0]!;
    assert.equal(c.ports?.find((p) => p.name === "cluster")?.containerPort, natsConf.clusterPort);
    assert.equal(c.ports?.find((p) => p.name === "client")?.containerPort, natsConf.clientPort);
    assert.equal(c.ports?.find((p) => p.name === "monitor")?.containerPort, natsConf.monitorPort);
    assert.equal(c.env?.find((e) => e.name === "POD_NAME")?.valueFrom?.fieldRef?.fieldPath, "metadata.name", "server_name: $POD_NAME");
    const templates = (nats.spec as unknown as { volumeClaimTemplates: Array<{ metadata: { name: string } }> }).volumeClaimTemplates;
    const data = c.volumeMounts?.find((m) => natsConf.storeDir?.startsWith(`${m.mountPath}/`));
    assert.ok(data && templates.some((t) => t.metadata.name === data.name), "store_dir is on a PVC from the claim template");
    assert.equal(configFile(nats, c, optionFlag(c.args ?? [], "-c")!), join(k8sDir, "config", "nats.conf"));
  });

  it("deploy - k8s: the registry Deployment runs 2 replicas with the registry's env, its config and /readyz, /healthz probes", () => {
    assert.equal(registry.spec.replicas, 2);
    const c = registry.spec.template.spec.containers[0]!;
    for (const e of c.env ?? []) assert.ok(ENV.registry.has(e.name), `the registry does not read ${e.name}`);
    const httpPort = portOf(envValue(c, "ROSTER_HTTP") ?? "");
    const named = (p: number | string) => (typeof p === "number" ? p : c.ports?.find((x) => x.name === p)?.containerPort);
    assert.equal(c.readinessProbe?.httpGet?.path, ROUTES.registry.ready);
    assert.equal(c.livenessProbe?.httpGet?.path, ROUTES.registry.live);
    assert.equal(named(c.readinessProbe!.httpGet!.port), httpPort);
    assert.equal(named(c.livenessProbe!.httpGet!.port), httpPort);
    const cfg = parseRegistryConfig(JSON.parse(read(configFile(registry, c, envValue(c, "ROSTER_REGISTRY_CONFIG")!))));
    assert.equal(cfg.kvReplicas, nats.spec.replicas, "the catalog bucket is replicated on every NATS node");
    assertReplicasSafe(cfg, registry.spec.replicas!, "k8s registry");
    const pods = Array.from({ length: nats.spec.replicas! }, (_, i) => `${nats.metadata.name}-${i}.${nats.spec.serviceName}`);
    assert.deepEqual(natsUrlHosts(envValue(c, "ROSTER_NATS_URL")!), pods.map((host) => ({ host, port: natsConf.clientPort })));
    assert.ok((registry.spec.template.spec.terminationGracePeriodSeconds ?? 30) * 1000 > registryForcedExitMs());
  });

  it("deploy - k8s: the agent DaemonSet takes its host id from the node name and its config parses with the agent's parser", () => {
    const spec = agent.spec.template.spec;
    const c = spec.containers[0]!;
    assert.equal(spec.hostNetwork, true);
    assert.equal(spec.dnsPolicy, "ClusterFirstWithHostNet", "hostNetwork pods need it to resolve nats-0.nats");
    for (const e of c.env ?? []) assert.ok(ENV.agent.has(e.name), `the agent does not read ${e.name}`);
    assert.equal(c.env?.find((e) => e.name === "ROSTER_HOST_ID")?.valueFrom?.fieldRef?.fieldPath, "spec.nodeName");
    assert.equal(c.env?.find((e) => e.name === "ROSTER_HOST_ADDRESS")?.valueFrom?.fieldRef?.fieldPath, "status.hostIP");
    const file = configFile(agent, c, optionFlag(c.args ?? [], "--config")!);
    const config = parseAgentConfig(read(file), file, { ...FACTS, hostname: "ip-10-0-1-23.eu-west-1.compute.internal" });
    assert.equal(config.host.id, "ip-10-0-1-23", "no host.id in the ConfigMap: the node name decides");
    for (const p of [c.readinessProbe, c.livenessProbe]) {
      assert.equal(p?.httpGet?.path, ROUTES.agent.live);
      assert.equal(p?.httpGet?.port, config.api.port);
      assert.equal(p?.httpGet?.host, config.api.host, "the kubelet probes the address the API listens on");
    }
    assert.ok((spec.terminationGracePeriodSeconds ?? 30) * 1000 > config.drainPeriodMs + 5000, "terminationGracePeriodSeconds covers drain.period");
    assert.deepEqual(natsUrlHosts(envValue(c, "ROSTER_NATS_URL")!).map((h) => h.host), natsUrlHosts(envValue(registry.spec.template.spec.containers[0]!, "ROSTER_NATS_URL")!).map((h) => h.host));
  });

  it("deploy - k8s: the images are the Dockerfile's targets, tagged by the kustomization", () => {
    const targets = parseDockerfile(read(join(deploy, "Dockerfile"))).stages.map((s) => s.name);
    for (const w of [registry, agent]) {
      for (const c of w.spec.template.spec.containers) {
        const entry = kustomization.images?.find((i) => i.name === c.image);
        assert.ok(entry?.newTag, `${c.image}: no tag in kustomization images`);
        assert.ok(targets.includes(c.image.replace(/^roster-/, "")), `${c.image}: no Dockerfile target`);
      }
    }
    assert.match(nats.spec.template.spec.containers[0]!.image, /^nats:\d/);
  });

  it("deploy - k8s: `kubectl kustomize` builds the tree (when kubectl is installed) into schema-valid objects", (t) => {
    if (!has("kubectl", ["version", "--client"])) {
      t.skip("no kubectl here: the manifests and generators were checked one by one above");
      return;
    }
    const r = spawnSync("kubectl", ["kustomize", k8sDir], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const built = r.stdout.split(/^---$/m).map((d) => parseDocument(d).toJS() as K8sObject);
    const cms = built.filter((o) => o.kind === "ConfigMap");
    assert.equal(cms.length, generated.size);
    for (const o of built) {
      if (o.kind !== "Namespace") assert.equal((o.metadata as { namespace?: string }).namespace, kustomization.namespace, `${o.kind} ${o.metadata.name}`);
      new (modelFor(o.apiVersion, o.kind)!)(o).validate();
    }
    // The generated (hashed) ConfigMap names are the ones the pods mount.
    for (const w of built.filter((o) => o.kind !== "ConfigMap") as Workload[]) {
      for (const v of w.spec?.template?.spec.volumes ?? []) if (v.configMap) assert.ok(cms.some((cm) => cm.metadata.name === v.configMap!.name), v.configMap.name);
    }
  });

  describe("deploy - k8s: the real agent with the DaemonSet's config and env", () => {
    let server: NatsServer;
    before(async () => {
      server = await NatsServer.start();
    });
    after(async () => {
      await server?.stop();
    });

    it("deploy - k8s: ROSTER_HOST_ID=<node name> makes the host id; SIGTERM drains and exits 0", async () => {
      const c = agent.spec.template.spec.containers[0]!;
      const file = configFile(agent, c, optionFlag(c.args ?? [], "--config")!);
      // The ConfigMap's file as is; the node's IP (status.hostIP) is loopback here, so the agent's
      // checks contact only 127.0.0.1.
      const proc = spawnNode(join(root, "agent", "bin", "roster-agent.js"), ["--config", file, "--nats", server.url, "--api", "127.0.0.1:0"], {
        env: { ...process.env, ROSTER_HOST_ID: "ip-10-0-1-23.eu-west-1.compute.internal", ROSTER_HOST_ADDRESS: "127.0.0.1" },
      });
      try {
        const died = proc.exited.then(({ code }) => {
          throw new Error(`roster-agent exited (${code}) before it started:\n${proc.output.slice(-2000)}`);
        });
        died.catch(() => undefined); // after the start, exiting is expected
        await Promise.race([proc.waitForOutput(/"api":"(http:\/\/127\.0\.0\.1:\d+)"/, 15_000), died]);
        const api = /"api":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(proc.output)![1]!;
        const health = (await (await fetch(`${api}/healthz`)).json()) as { hostId: string; natsConnected: boolean };
        assert.equal(health.hostId, "ip-10-0-1-23");
        await waitFor(async () => ((await (await fetch(`${api}/healthz`)).json()) as { natsConnected: boolean }).natsConnected, { timeoutMs: 10_000, what: "agent connected" });
        const list = (await (await fetch(`${api}/v1/agent/instances`)).json()) as { instances: Array<{ id: string; address: string }> };
        assert.deepEqual(list.instances.map((i) => [i.id, i.address]), [["ip-10-0-1-23-9100", "127.0.0.1"]]);
        proc.kill("SIGTERM");
        await proc.waitForOutput("draining", 5000);
        // The drain period of the ConfigMap (10 s) is what the pod's grace period covers; a second
        // signal skips the wait, as the agent documents.
        proc.kill("SIGTERM");
        const { code } = await proc.exited;
        assert.equal(code, 0, proc.output.slice(-2000));
      } finally {
        await proc.stop(2000);
      }
    });

    it("deploy - k8s: a ROSTER_HOST_ADDRESS that is not an address stops the agent at once, naming the variable", async () => {
      const c = agent.spec.template.spec.containers[0]!;
      const file = configFile(agent, c, optionFlag(c.args ?? [], "--config")!);
      const proc = spawnNode(join(root, "agent", "bin", "roster-agent.js"), ["--config", file, "--nats", server.url], {
        env: { ...process.env, ROSTER_HOST_ADDRESS: "not an address" },
      });
      const { code } = await proc.exited;
      assert.equal(code, 1);
      assert.match(proc.output, /ROSTER_HOST_ADDRESS/);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------------------------

describe("deploy - systemd", () => {
  const sysDir = join(deploy, "systemd");
  const units = readdirSync(sysDir).filter((f) => f.endsWith(".service")).sort();
  const HARDENING = ["NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes", "CapabilityBoundingSet=", "RestrictSUIDSGID=yes", "SystemCallArchitectures=native"];

  it("deploy - systemd: `systemd-analyze verify` has nothing to say (when it is installed)", (t) => {
    assert.deepEqual(units, ["roster-agent.service", "roster-registry.service"]);
    if (!has("systemd-analyze", ["--version"])) {
      t.skip("no systemd-analyze here: the key checks below stand alone");
      return;
    }
    // verify insists that ExecStart's program exists: where node is not /usr/bin/node (nvm, say),
    // check copies that name this node instead.
    let files = units.map((u) => join(sysDir, u));
    let copies: string | undefined;
    if (!existsSync("/usr/bin/node")) {
      const dir = (copies = mkdtempSync(join(tmpdir(), "roster-units-")));
      files = units.map((u) => {
        const copy = join(dir, u);
        writeFileSync(copy, read(join(sysDir, u)).replaceAll("/usr/bin/node", process.execPath));
        return copy;
      });
    }
    // It exits 0 on unknown keys and bad values but prints them: any output is a finding.
    const r = spawnSync("systemd-analyze", ["verify", "--man=no", ...files], { encoding: "utf8" });
    if (copies) rmSync(copies, { recursive: true, force: true });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(`${r.stdout}${r.stderr}`.trim(), "");
  });

  it("deploy - systemd: units start existing binaries with SIGTERM, restarts, an env file the binary reads, hardening, stop timeouts that cover the shutdown", () => {
    const example = parseAgentConfig(read(join(root, "examples", "agent.yaml")), "agent.yaml", { ...FACTS, hostname: "h" });
    for (const name of units) {
      const unit = parseUnit(read(join(sysDir, name)));
      const svc = unit.get("Service");
      assert.ok(svc && unit.get("Unit") && unit.get("Install"), `${name}: sections`);
      const one = (k: string) => {
        const v = svc.get(k);
        assert.ok(v?.length, `${name}: no ${k}=`);
        return v.at(-1)!;
      };
      const exec = /^(\S+) \/opt\/roster\/(\S+)/.exec(one("ExecStart"));
      assert.ok(exec, `${name}: ExecStart`);
      assert.ok(existsSync(join(root, exec[2]!)), `${name}: ${exec[2]} does not exist`);
      const program = exec[2]!.startsWith("agent/") ? "agent" : "registry";
      assert.equal(one("KillSignal"), "SIGTERM");
      assert.match(one("Restart"), /^(on-failure|always)$/);
      assert.notEqual(one("User"), "root");
      const text = read(join(sysDir, name));
      for (const h of HARDENING) assert.ok(text.split(/\r?\n/).includes(h), `${name}: missing ${h}`);
      assert.ok(!/^MemoryDenyWriteExecute=yes/m.test(text), `${name}: V8's JIT needs W+X memory`);
      // Environment= and the example EnvironmentFile= only set what the program reads.
      const envNames = (svc.get("Environment") ?? []).map((e) => e.split("=")[0]!);
      const envFile = /^-?\/etc\/roster\/(.+)$/.exec(one("EnvironmentFile"));
      assert.ok(envFile, `${name}: EnvironmentFile= outside /etc/roster`);
      const envExample = join(sysDir, envFile[1]!);
      assert.ok(existsSync(envExample), `${name}: no example ${envFile[1]} in deploy/systemd`);
      envNames.push(...parseEnvFile(read(envExample)).keys());
      for (const e of envNames) assert.ok(ENV[program].has(e), `${name}: ${program} does not read ${e}`);
      const stopMs = unitTimeMs(one("TimeoutStopSec"));
      if (program === "registry") assert.ok(stopMs > registryForcedExitMs(), `${name}: TimeoutStopSec`);
      else assert.ok(stopMs > Math.max(example.drainPeriodMs, durationMs("5s")) + 5000, `${name}: TimeoutStopSec does not cover drain.period`);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Auth on by default (SECURITY.md): every deploy flavour runs the registry with HTTP tokens and
// fails closed without them; agents keep their API on loopback with API exec checks off.
// ---------------------------------------------------------------------------------------------

describe("deploy - auth", () => {
  it("deploy - auth: compose, k8s and systemd give the registry its tokens and http.requireAuth; agents stay on loopback", () => {
    for (const f of [join(deploy, "registry.json"), join(k8sDir, "config", "registry.json")]) {
      assert.equal(parseRegistryConfig(JSON.parse(read(f))).http.requireAuth, true, `${f}: http.requireAuth`);
    }
    const compose = readYaml<Compose>(join(deploy, "docker-compose.yml"));
    const registries = Object.entries(compose.services).filter(([, s]) => s.build?.target === "registry");
    for (const [name, svc] of registries) {
      assert.ok((svc.env_file ?? []).some((e) => (typeof e === "string" ? e : e.path) === "./secrets/registry-http.env"), `${name}: no HTTP token env_file`);
    }
    const k8sRegistry = readYamlDocs(join(k8sDir, "registry.yaml")).find((o) => (o as K8sObject).kind === "Deployment") as Workload;
    const c = k8sRegistry.spec.template.spec.containers[0]!;
    for (const name of ["ROSTER_HTTP_READ_TOKEN", "ROSTER_HTTP_WRITE_TOKEN"]) {
      const ref = c.env?.find((e) => e.name === name)?.valueFrom?.secretKeyRef;
      assert.ok(ref && ref.optional !== true, `k8s registry: ${name} from a required Secret`);
      assert.ok(ENV.registry.has(name));
    }
    const unit = parseUnit(read(join(deploy, "systemd", "roster-registry.service")));
    assert.ok(unit.get("Service")?.get("EnvironmentFile")?.includes("-/etc/roster/registry-http.env"), "systemd: registry-http.env");
    const agentConfigs = [join(deploy, "compose", "agent.yaml"), join(k8sDir, "config", "agent.yaml"), join(root, "examples", "agent.yaml")];
    for (const f of agentConfigs) {
      const config = parseAgentConfig(read(f), f, { ...FACTS, hostname: "h" });
      assert.match(config.api.host, /^(127\.|::1$|localhost$)/, `${f}: the agent API beyond loopback`);
      assert.notEqual(config.api.allowExecChecks, true, `${f}: exec checks through the API`);
    }
  });

  it("deploy - auth: scripts/http-tokens.mjs writes 0600 tokens; a registry with requireAuth refuses to start without them and runs closed with them", async () => {
    const dir = mkdtempSync(join(tmpdir(), "roster-http-tokens-"));
    const procs: Array<ReturnType<typeof spawnNode>> = [];
    try {
      const gen = spawnSync(process.execPath, [join(root, "scripts", "http-tokens.mjs"), "--out", join(dir, "secrets")], { encoding: "utf8" });
      assert.equal(gen.status, 0, gen.stderr);
      const envFile = join(dir, "secrets", "registry-http.env");
      assert.equal(statSync(envFile).mode & 0o777, 0o600);
      const tokens = parseEnvFile(read(envFile));
      for (const k of tokens.keys()) assert.ok(ENV.registry.has(k), `the registry does not read ${k}`);
      const registryBin = join(root, "registry", "bin", "roster-registry.js");
      const args = ["--nats", `nats://127.0.0.1:${await freePort()}`, "--http", "127.0.0.1:0", "--config", join(deploy, "registry.json")];
      const bare = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("ROSTER_")));
      const open = spawnNode(registryBin, args, { env: bare });
      procs.push(open);
      assert.equal((await open.exited).code, 1);
      assert.match(open.output, /http\.requireAuth: no HTTP token is configured/);
      const closed = spawnNode(registryBin, args, { env: { ...bare, ...Object.fromEntries(tokens) } });
      procs.push(closed);
      await closed.waitForOutput(/"msg":"HTTP listening"/, 30_000);
      const url = /"url":"(http:\/\/[^"]+)"/.exec(closed.output)![1]!;
      assert.equal((await fetch(`${url}/v1/services`)).status, 401);
      // With the read token: past auth (503 ROSTER_NOT_READY here: no NATS), not 401.
      const withToken = await fetch(`${url}/v1/services`, { headers: { authorization: `Bearer ${tokens.get("ROSTER_HTTP_READ_TOKEN")}` } });
      assert.notEqual(withToken.status, 401);
    } finally {
      for (const p of procs) p.kill("SIGKILL");
      await Promise.all(procs.map((p) => p.exited));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
