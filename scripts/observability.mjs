#!/usr/bin/env node
// Writes the observability files operators install, from one place:
//   deploy/grafana/roster.json                     the Grafana dashboard (from PANELS below)
//   deploy/k8s/monitoring/prometheus-rule.yaml     the PrometheusRule (from deploy/prometheus/roster.rules.yaml)
//   node scripts/observability.mjs           write them
//   node scripts/observability.mjs --check   exit 1 if a written file is not what this script makes
// test/e2e/observability.test.ts runs --check and checks every metric the queries name against
// the /metrics output of a real registry, agent and gateway client.
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { parse, stringify } from "yaml";

const root = new URL("..", import.meta.url).pathname;
const DS = { type: "prometheus", uid: "${datasource}" };
const RATE = "$__rate_interval";

// [title, unit, queries as [expr, legend], options]; a `row` entry starts a section.
const PANELS = [
  { row: "Registry" },
  ["Catalog size", "short", [["max(roster_registry_catalog_instances)", "instances"], ["max(roster_registry_catalog_services)", "services"], ["max(roster_registry_hosts)", "hosts"], ["max(roster_registry_hosts_lost)", "hosts lost"]]],
  ["Catalog changes/s", "ops", [[`sum by (op) (rate(roster_registry_catalog_changes_total[${RATE}]))`, "{{op}}"]]],
  ["Delta publish lag", "s", [
    [`histogram_quantile(0.5, sum by (le) (rate(roster_registry_delta_publish_lag_seconds_bucket[${RATE}])))`, "p50"],
    [`histogram_quantile(0.99, sum by (le) (rate(roster_registry_delta_publish_lag_seconds_bucket[${RATE}])))`, "p99"],
    ["max(roster_registry_delta_lag_tracked)", "decisions waiting"],
  ]],
  ["Drops by reason", "ops", [[`sum by (reason, kind) (rate(roster_registry_drops_total[${RATE}]))`, "{{reason}} {{kind}}"]]],
  ["Degraded and readiness", "short", [
    ["max by (instance) (roster_registry_self_preservation)", "degraded {{instance}}"],
    ["min by (instance) (roster_registry_nats_connected)", "NATS connected {{instance}}"],
    ["min by (instance) (roster_registry_catalog_loaded)", "catalog loaded {{instance}}"],
  ], { max: 1.2 }],
  ["KV writes: retries, conflicts, failures", "ops", [
    [`sum(rate(roster_registry_kv_write_retries_total[${RATE}]))`, "retries"],
    [`sum(rate(roster_registry_kv_write_conflicts_total[${RATE}]))`, "conflicts"],
    [`sum(rate(roster_registry_kv_write_failures_total[${RATE}]))`, "given up"],
    ["sum(roster_registry_kv_writes_pending)", "pending"],
  ]],
  ["Agent messages received", "ops", [[`sum by (kind) (rate(roster_registry_messages_received_total[${RATE}]))`, "{{kind}}"]]],
  ["Lifecycle events", "ops", [[`sum by (event) (rate(roster_registry_lifecycle_events_total[${RATE}]))`, "{{event}}"]]],
  { row: "Agents" },
  ["Check results", "ops", [[`sum by (type, status) (rate(roster_agent_check_results_total[${RATE}]))`, "{{type}} {{status}}"]]],
  ["Check latency", "s", [
    [`histogram_quantile(0.5, sum by (type, le) (rate(roster_agent_check_duration_seconds_bucket[${RATE}])))`, "p50 {{type}}"],
    [`histogram_quantile(0.99, sum by (type, le) (rate(roster_agent_check_duration_seconds_bucket[${RATE}])))`, "p99 {{type}}"],
  ]],
  ["Agents and instances", "short", [
    ["sum(roster_agent_nats_connected)", "agents connected to NATS"],
    ["sum(roster_agent_instances)", "instances"],
    ["sum(roster_agent_draining)", "agents draining"],
  ]],
  ["Agent messages published and dropped", "ops", [
    [`sum by (kind) (rate(roster_agent_messages_published_total[${RATE}]))`, "published {{kind}}"],
    [`sum by (reason) (rate(roster_agent_messages_dropped_total[${RATE}]))`, "dropped {{reason}}"],
  ]],
  { row: "Gateway clients" },
  ["Requests by outcome", "reqps", [[`sum by (service, outcome) (rate(roster_gateway_requests_total[${RATE}]))`, "{{service}} {{outcome}}"]]],
  ["Retries and hedges", "ops", [
    [`sum by (service) (rate(roster_gateway_retries_total[${RATE}]))`, "retries {{service}}"],
    [`sum by (service) (rate(roster_gateway_hedges_total[${RATE}]))`, "hedges {{service}}"],
  ]],
  ["Retry budget exhausted", "ops", [[`sum by (service) (rate(roster_gateway_retry_budget_exhausted_total[${RATE}]))`, "{{service}}"]]],
  ["Ejections", "ops", [[`sum by (service) (rate(roster_gateway_ejections_total[${RATE}]))`, "{{service}}"]]],
  ["Endpoints by state", "short", [[`sum by (service, state) (roster_gateway_endpoints{state!="total"})`, "{{service}} {{state}}"]]],
  ["Stale mirrors and panic", "short", [
    ["sum(roster_gateway_stale)", "gateways with a stale mirror"],
    ["sum by (service) (roster_gateway_panic)", "panic {{service}}"],
  ]],
  ["In flight and queued", "short", [
    ["sum by (service) (roster_gateway_in_flight)", "in flight {{service}}"],
    ["sum by (service) (roster_gateway_queued)", "queued {{service}}"],
  ]],
];

function dashboard() {
  const panels = [];
  let id = 1;
  let x = 0;
  let y = 0;
  for (const p of PANELS) {
    if (!Array.isArray(p)) {
      if (x > 0) y += 8;
      x = 0;
      panels.push({ id: id++, type: "row", title: p.row, collapsed: false, gridPos: { h: 1, w: 24, x: 0, y }, panels: [] });
      y += 1;
      continue;
    }
    const [title, unit, queries, opts = {}] = p;
    panels.push({
      id: id++,
      type: "timeseries",
      title,
      datasource: DS,
      gridPos: { h: 8, w: 8, x, y },
      fieldConfig: { defaults: { unit, ...(opts.max !== undefined ? { max: opts.max, min: 0 } : {}) }, overrides: [] },
      options: { legend: { displayMode: "list", placement: "bottom", showLegend: true }, tooltip: { mode: "multi", sort: "desc" } },
      targets: queries.map(([expr, legendFormat], i) => ({ refId: String.fromCharCode(65 + i), datasource: DS, expr, legendFormat, range: true })),
    });
    x += 8;
    if (x >= 24) {
      x = 0;
      y += 8;
    }
  }
  return {
    title: "Roster",
    uid: "roster-overview",
    description: "Roster service discovery: registry, host agents and gateway clients. Generated by scripts/observability.mjs.",
    tags: ["roster", "service-discovery"],
    editable: true,
    schemaVersion: 39,
    version: 1,
    time: { from: "now-1h", to: "now" },
    refresh: "30s",
    timezone: "",
    templating: { list: [{ name: "datasource", label: "Prometheus", type: "datasource", query: "prometheus", current: {}, hide: 0 }] },
    annotations: { list: [] },
    panels,
  };
}

function prometheusRule() {
  const rules = parse(readFileSync(join(root, "deploy/prometheus/roster.rules.yaml"), "utf8"));
  const head = [
    "# Generated by `node scripts/observability.mjs` from deploy/prometheus/roster.rules.yaml: edit that file.",
    "# Needs the Prometheus Operator's CRDs: kubectl apply -k deploy/k8s/monitoring",
    "",
  ].join("\n");
  return head + stringify({
    apiVersion: "monitoring.coreos.com/v1",
    kind: "PrometheusRule",
    metadata: { name: "roster", labels: { "app.kubernetes.io/name": "roster", "app.kubernetes.io/part-of": "roster" } },
    spec: { groups: rules.groups },
  }, { lineWidth: 0 });
}

const outputs = [
  ["deploy/grafana/roster.json", `${JSON.stringify(dashboard(), null, 2)}\n`],
  ["deploy/k8s/monitoring/prometheus-rule.yaml", prometheusRule()],
];
const check = process.argv.includes("--check");
let stale = 0;
for (const [rel, text] of outputs) {
  const file = join(root, rel);
  if (check) {
    let current = "";
    try {
      current = readFileSync(file, "utf8");
    } catch {
      // missing counts as stale
    }
    if (current !== text) {
      console.error(`${rel} is not what scripts/observability.mjs makes: run \`node scripts/observability.mjs\``);
      stale++;
    }
  } else {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, text);
    console.log(`wrote ${rel}`);
  }
}
process.exit(stale ? 1 : 0);
