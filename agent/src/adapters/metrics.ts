/**
 * The agent's Prometheus metrics (prom-client) on a Registry of its own, served on the local
 * API's `GET /metrics`. Check results are counted as they arrive (seconds apart, not a hot
 * path); everything else is read from the agent's state at scrape time.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { CheckResult } from "../core/check.js";
import type { RunObserver } from "./checks/scheduler.js";
import type { NatsLink } from "./nats.js";

export interface AgentMetricsSource {
  link: NatsLink;
  instances(): number;
  draining(): boolean;
}

export class AgentMetrics {
  readonly registry = new Registry();
  private readonly results: Counter<"type" | "status">;
  private readonly duration: Histogram<"type">;
  private readonly registrations: Counter<"source">;

  constructor(src: AgentMetricsSource, opts: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (opts.processMetrics) collectDefaultMetrics({ register: this.registry });
    this.results = new Counter({ name: "roster_agent_check_results_total", help: "Check results, by check type (http, tcp, exec, ttl) and status (passing, warning, critical)", labelNames: ["type", "status"], registers });
    this.duration = new Histogram({
      name: "roster_agent_check_duration_seconds",
      help: "How long an active check's probe took (http, tcp, exec), timeouts included",
      labelNames: ["type"],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.registrations = new Counter({ name: "roster_agent_registrations_total", help: "Instances registered or replaced on this host, by source (config, api)", labelNames: ["source"], registers });
    for (const source of ["config", "api"]) this.registrations.inc({ source }, 0);

    new Counter({
      name: "roster_agent_messages_published_total",
      help: "Messages published to NATS, by kind (register, heartbeat, health, deregister)",
      labelNames: ["kind"],
      registers,
      collect() {
        this.reset();
        for (const [kind, n] of Object.entries(src.link.publishedByKind)) this.inc({ kind }, n);
      },
    });
    new Counter({
      name: "roster_agent_messages_dropped_total",
      help: "Messages not sent, by reason (disconnected: NATS unreachable; invalid-resync: a bad resync received)",
      labelNames: ["reason"],
      registers,
      collect() {
        const s = src.link.snapshot();
        this.reset();
        this.inc({ reason: "disconnected" }, s.droppedDisconnected);
        this.inc({ reason: "invalid-resync" }, s.droppedInvalidResync);
      },
    });
    new Gauge({
      name: "roster_agent_nats_connected",
      help: "1 while connected to NATS",
      registers,
      collect() {
        this.set(src.link.isConnected ? 1 : 0);
      },
    });
    new Gauge({
      name: "roster_agent_instances",
      help: "Instances registered on this host",
      registers,
      collect() {
        this.set(src.instances());
      },
    });
    new Gauge({
      name: "roster_agent_draining",
      help: "1 while the agent is shutting down (every instance draining)",
      registers,
      collect() {
        this.set(src.draining() ? 1 : 0);
      },
    });
  }

  /** For the check scheduler: one result (and the probe's duration for an active check). */
  readonly checkRun: RunObserver = (type, result: CheckResult, durationMs) => {
    this.results.inc({ type, status: result.status });
    if (durationMs !== undefined) this.duration.observe({ type }, durationMs / 1000);
  };

  registered(source: "config" | "api"): void {
    this.registrations.inc({ source });
  }
}
