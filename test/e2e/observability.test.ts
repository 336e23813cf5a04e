// What operators install for monitoring: the Grafana dashboard and the Prometheus rules name only
// metrics Roster exports, read from the real /metrics of a registry and an agent (their bins,
// against a real nats-server) and of a gateway client routing a real request; the rules pass
// `promtool check rules` and their unit tests (`promtool test rules`); the generated files are
// current; the ServiceMonitor points at the registry's Service.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createServer, type Server } from "node:http";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { createGateway, type Gateway } from "roster-gateway-client";
import { ChildProc, NatsServer, freePort, spawnNode, waitFor } from "roster-testkit";
import { parse as parseYaml, parseAllDocuments } from "yaml";

const root = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..");
const RULES = join(root, "deploy", "prometheus", "roster.rules.yaml");
const RULE_TESTS = join(root, "deploy", "prometheus", "roster.rules.test.yaml");
const DASHBOARD = join(root, "deploy", "grafana", "roster.json");
const MONITORING = join(root, "deploy", "k8s", "monitoring");

// PromQL words that look like metric names but are not.
const KEYWORDS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "inf", "nan"]);

/** The metric names a PromQL expression selects (label matchers, label lists, ranges, strings and Grafana variables taken out). */
export function metricNames(expr: string): Set<string> {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, "")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, "")
    .replace(/\[[^\]]*\]/g, "")
    .replace(/\$\{?\w+\}?/g, "")
    // Numbers (1e-9, 0.99) and durations (offset 5m, 1h30m) are not names.
    .replace(/(?<![A-Za-z0-9_:])\d[\d.]*(?:e[+-]?\d+)?(?:(?:ms|[smhdwy])\d*)*/gi, "");
  const names = new Set<string>();
  for (const m of bare.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?/g)) {
    if (m[2] || KEYWORDS.has(m[1]!.toLowerCase())) continue; // a function call or a keyword
    names.add(m[1]!);
  }
  return names;
}

/** Names in a Prometheus text exposition: every sample's name, and a histogram's series names from its TYPE line. */
function exposed(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split("\n")) {
    const type = /^# TYPE (\S+) (\w+)/.exec(line);
    if (type) {
      names.add(type[1]!);
      if (type[2] === "histogram") for (const s of ["_bucket", "_sum", "_count"]) names.add(type[1]! + s);
      continue;
    }
    const sample = /^([A-Za-z_:][A-Za-z0-9_:]*)[{ ]/.exec(line);
    if (sample) names.add(sample[1]!);
  }
  return names;
}

interface RuleFile {
  groups: { name: string; rules: { record?: string; alert?: string; expr: string }[] }[];
}

describe("observability (dashboard, rules, monitors)", { timeout: 120_000 }, () => {
  let nats: NatsServer;
  let dir: string;
  let upstream: Server;
  let registry: ChildProc;
  let agent: ChildProc;
  let gw: Gateway | undefined;
  const scraped: Record<"registry" | "agent" | "gateway", Set<string>> = { registry: new Set(), agent: new Set(), gateway: new Set() };
  let rules: RuleFile;

  before(async () => {
    rules = parseYaml(await readFile(RULES, "utf8")) as RuleFile;
    nats = await NatsServer.start();
    dir = await mkdtemp(join(tmpdir(), "roster-observability-"));
    upstream = createServer((_req, res) => res.end("ok"));
    const upstreamPort = await freePort();
    await new Promise<void>((ok) => upstream.listen(upstreamPort, "127.0.0.1", ok));
    const http = `127.0.0.1:${await freePort()}`;
    const api = `127.0.0.1:${await freePort()}`;
    registry = spawnNode(join(root, "registry", "bin", "roster-registry.js"), ["--nats", nats.url, "--http", http]);
    const cfg = join(dir, "agent.yaml");
    await writeFile(cfg, ["host: { id: obs-host }", "heartbeat: { interval: 200ms }", "services:", `  - { name: obs, id: obs-1, address: 127.0.0.1, port: ${upstreamPort}, checks: [{ type: http, path: /, interval: 200ms }] }`, ""].join("\n"));
    agent = spawnNode(join(root, "agent", "bin", "roster-agent.js"), ["--config", cfg, "--nats", nats.url, "--api", api]);
    await waitFor(async () => (await (await fetch(`http://${http}/v1/services/obs/instances?status=passing`).catch(() => null))?.text())?.includes("obs-1"), {
      timeoutMs: 30_000,
      what: `obs-1 passing\n${registry.output.slice(-1000)}\n${agent.output.slice(-1000)}`,
    });
    gw = await createGateway({ nats: nats.url, services: ["obs"], metrics: true });
    const res = await gw.request("obs", { method: "GET", path: "/" });
    assert.equal(res.statusCode, 200);
    await res.body.text();
    scraped.registry = exposed(await (await fetch(`http://${http}/metrics`)).text());
    scraped.agent = exposed(await (await fetch(`http://${api}/metrics`)).text());
    scraped.gateway = exposed(await gw.metrics!.metrics());
  });

  after(async () => {
    await gw?.close();
    await agent?.stop();
    await registry?.stop();
    upstream?.close();
    await nats?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("observability - the query parser finds metric names and nothing else", () => {
    assert.deepEqual([...metricNames('histogram_quantile(0.99, sum by (le, "x") (rate(a_bucket{job=~"r.*",le!="1"}[$__rate_interval]))) / on(job) group_left b_total > 0.5 or c == bool 1')].sort(), ["a_bucket", "b_total", "c"]);
    assert.deepEqual([...metricNames("max by (job) (roster:x:ratio) offset 5m")], ["roster:x:ratio"]);
    assert.deepEqual([...metricNames("a / clamp_min(b, 1e-9) > 0.5e+3")].sort(), ["a", "b"]);
    assert.deepEqual([...metricNames("rate(nope_total[1h30m])")], ["nope_total"]);
  });

  it("observability - every metric the dashboard and the rules name is exported by a real registry, agent or gateway client", async () => {
    const all = new Set([...scraped.registry, ...scraped.agent, ...scraped.gateway]);
    for (const [who, prefix] of [["registry", "roster_registry_"], ["agent", "roster_agent_"], ["gateway", "roster_gateway_"]] as const) {
      assert.ok([...scraped[who]].filter((n) => n.startsWith(prefix)).length >= 5, `${who}: too few ${prefix}* metrics scraped`);
    }
    const recorded = new Set(rules.groups.flatMap((g) => g.rules.flatMap((r) => (r.record ? [r.record] : []))));
    const dashboard = JSON.parse(await readFile(DASHBOARD, "utf8")) as { panels: { title: string; targets?: { expr: string }[] }[] };
    const queries: [string, string][] = [
      ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t): [string, string] => [`dashboard "${p.title}"`, t.expr])),
      ...rules.groups.flatMap((g) => g.rules.map((r): [string, string] => [`rule ${r.record ?? r.alert}`, r.expr])),
    ];
    assert.ok(queries.length >= 40, `only ${queries.length} queries`);
    const named = new Set<string>();
    for (const [where, expr] of queries) {
      const names = metricNames(expr);
      assert.ok(names.size > 0, `${where}: no metric in ${expr}`);
      for (const n of names) {
        named.add(n);
        assert.ok(all.has(n) || recorded.has(n), `${where}: ${n} is not a metric Roster exports (${expr})`);
      }
    }
    // The sections the dashboard promises are there.
    const titles = dashboard.panels.map((p) => p.title);
    for (const t of ["Catalog size", "Catalog changes/s", "Delta publish lag", "Drops by reason", "Degraded and readiness", "KV writes: retries, conflicts, failures", "Check results", "Check latency", "Requests by outcome", "Retries and hedges", "Ejections", "Retry budget exhausted", "Stale mirrors and panic"]) {
      assert.ok(titles.includes(t), `dashboard has no panel "${t}"`);
    }
    assert.ok(named.has("roster_gateway_panic") && named.has("roster_registry_self_preservation"));
  });

  it("observability - the alerts operators expect exist; promtool checks the rules and runs their unit tests", () => {
    const alerts = rules.groups.flatMap((g) => g.rules.flatMap((r) => (r.alert ? [r.alert] : [])));
    for (const a of ["RosterRegistryDegraded", "RosterRegistryNotReady", "RosterDeltaPublishLagHigh", "RosterRegistryDropping", "RosterAgentsLost", "RosterGatewayNoHealthyUpstream", "RosterGatewayRetryBudgetExhausted", "RosterGatewayStaleMirror"]) {
      assert.ok(alerts.includes(a), `no alert ${a}`);
    }
    const check = spawnSync("promtool", ["check", "rules", RULES], { encoding: "utf8" });
    assert.equal(check.error, undefined, "promtool is missing: apt-get install -y prometheus (see .ci/run)");
    assert.equal(check.status, 0, check.stdout + check.stderr);
    const test = spawnSync("promtool", ["test", "rules", RULE_TESTS], { encoding: "utf8", cwd: join(root, "deploy", "prometheus") });
    assert.equal(test.status, 0, test.stdout + test.stderr);
    assert.match(test.stdout + test.stderr, /SUCCESS/);
    // Not vacuous: a broken rule is refused.
    const bad = spawnSync("promtool", ["check", "rules", "/dev/stdin"], { input: "groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: sum(rate(x[5m]) >\n", encoding: "utf8" });
    assert.notEqual(bad.status, 0);
  });

  it("observability - the generated dashboard and PrometheusRule are current; the PrometheusRule carries the rules file's groups", async () => {
    const r = spawnSync(process.execPath, [join(root, "scripts", "observability.mjs"), "--check"], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const rule = parseYaml(await readFile(join(MONITORING, "prometheus-rule.yaml"), "utf8")) as { apiVersion: string; kind: string; spec: RuleFile };
    assert.equal(rule.apiVersion, "monitoring.coreos.com/v1");
    assert.equal(rule.kind, "PrometheusRule");
    assert.deepEqual(rule.spec.groups, rules.groups);
    const file = join(dir, "from-prometheus-rule.yaml");
    await writeFile(file, JSON.stringify({ groups: rule.spec.groups }));
    const check = spawnSync("promtool", ["check", "rules", file], { encoding: "utf8" });
    assert.equal(check.status, 0, check.stdout + check.stderr);
  });

  it("observability - the ServiceMonitor selects the registry's Service by its labels and scrapes its named port", async () => {
    const kustomization = parseYaml(await readFile(join(MONITORING, "kustomization.yaml"), "utf8")) as { namespace: string; resources: string[] };
    assert.deepEqual(kustomization.resources.sort(), ["prometheus-rule.yaml", "service-monitor.yaml"]);
    const sm = parseYaml(await readFile(join(MONITORING, "service-monitor.yaml"), "utf8")) as {
      apiVersion: string;
      kind: string;
      spec: { selector: { matchLabels: Record<string, string> }; namespaceSelector: { matchNames: string[] }; endpoints: { port: string; path: string }[] };
    };
    assert.equal(sm.apiVersion, "monitoring.coreos.com/v1");
    assert.equal(sm.kind, "ServiceMonitor");
    const registryDocs = parseAllDocuments(await readFile(join(root, "deploy", "k8s", "registry.yaml"), "utf8")).map((d) => d.toJS() as { kind: string; metadata: { labels?: Record<string, string> }; spec: { ports?: { name: string }[] } });
    const service = registryDocs.find((d) => d.kind === "Service");
    assert.ok(service);
    for (const [k, v] of Object.entries(sm.spec.selector.matchLabels)) assert.equal(service.metadata.labels?.[k], v, `Service label ${k}`);
    const mainKustomization = parseYaml(await readFile(join(root, "deploy", "k8s", "kustomization.yaml"), "utf8")) as { namespace: string };
    assert.deepEqual(sm.spec.namespaceSelector.matchNames, [mainKustomization.namespace]);
    assert.equal(kustomization.namespace, mainKustomization.namespace);
    for (const e of sm.spec.endpoints) {
      assert.ok(service.spec.ports?.some((p) => p.name === e.port), `ServiceMonitor port ${e.port} is not a port of the Service`);
      assert.equal(e.path, "/metrics");
    }
    assert.ok(scraped.registry.has("roster_registry_catalog_instances"), "the path the ServiceMonitor scrapes serves the registry's metrics");
  });
});
