import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import type { NatsConnectOptions } from "roster-schemas";
import { resolveInstance, type AgentConfig, type InstanceSpec, type ServiceInput } from "./config.js";
import { CheckScheduler } from "./adapters/checks/scheduler.js";
import { buildApi, type AgentOps } from "./adapters/api.js";
import { AgentMetrics } from "./adapters/metrics.js";
import { NatsLink } from "./adapters/nats.js";
import type { CheckResult } from "./core/check.js";
import { HostState, type InstanceView, type Outbound } from "./core/host.js";
import { AgentError } from "./errors.js";

export interface AgentDeps {
  logger: Logger;
  /** NATS server URL(s). */
  nats: string | string[];
  /** Authenticator and TLS for NATS (natsConnectOptions of roster-schemas). */
  natsAuth?: Omit<NatsConnectOptions, "servers">;
  /** Clock (epoch ms); default Date.now. */
  now?: () => number;
  /** Default address for API-registered instances without one. */
  defaultAddress?: string;
  /** Base directory for exec checks of API-registered instances; default process.cwd(). */
  baseDir?: string;
  /** Node process metrics on /metrics (the roster-agent process turns them on; off when embedded). */
  processMetrics?: boolean;
}

export interface Agent extends AgentOps {
  readonly host: HostState;
  readonly link: NatsLink;
  readonly metrics: AgentMetrics;
  /** Starts checks, the NATS link (in the background) and the local API; returns the API address. */
  start(): Promise<{ apiUrl: string }>;
  /**
   * Graceful stop: every instance draining (register), wait the drain period (cut short when
   * `skipWait` aborts), deregister all, flush NATS, close the API.
   */
  shutdown(opts?: { skipWait?: AbortSignal }): Promise<void>;
  /** Immediate stop without drain or deregister (tests, fatal errors). */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const VERDICT: Record<"pass" | "warn" | "fail", CheckResult["status"]> = { pass: "passing", warn: "warning", fail: "critical" };

/** Wires the pure host state to the check scheduler, NATS and the local API. */
export function build(config: AgentConfig, deps: AgentDeps): Agent {
  const now = deps.now ?? Date.now;
  const log = deps.logger;
  const host = new HostState({ hostId: config.host.id, ...(config.host.zone ? { zone: config.host.zone } : {}), epoch: now(), heartbeatIntervalMs: config.heartbeatIntervalMs });
  const publishAll = (msgs: Outbound[]) => {
    for (const m of msgs) {
      try {
        link.publish(m);
      } catch (err) {
        // A message that fails its own schema is a bug here; log it, never crash the agent.
        log.error({ err, kind: m.kind }, "could not publish a message");
      }
      if (m.kind === "health") {
        log.info({ service: m.service, instanceId: m.instanceId, check: m.check.id, status: m.check.status, output: m.check.output, instanceStatus: m.instanceStatus }, "check changed");
      }
    }
  };
  const scheduler = new CheckScheduler((instanceId, checkId, result) => publishAll(host.checkResult(instanceId, checkId, result, now())), log.child({ component: "checks" }), (...a) => metrics.checkRun(...a));
  const publishState = () => {
    publishAll([host.register(now()), host.heartbeat(now())]);
  };
  const link = new NatsLink({
    servers: deps.nats,
    hostId: host.hostId,
    log: log.child({ component: "nats" }),
    onConnected: () => publishState(),
    onResync: () => publishAll([host.register(now())]),
    ...(deps.natsAuth ? { auth: deps.natsAuth } : {}),
  });
  const metrics = new AgentMetrics({ link, instances: () => host.size, draining: () => host.draining }, { processMetrics: deps.processMetrics ?? false });
  let api: FastifyInstance | null = null;
  let heartbeat: NodeJS.Timeout | undefined;
  let shutdownPromise: Promise<void> | null = null;
  let closed = false;

  const addInstance = (spec: InstanceSpec, source: "config" | "api") => {
    const { messages, replaced } = host.upsert(spec, now());
    metrics.registered(source);
    scheduler.set(spec.id, spec.checks);
    publishAll(messages);
    return replaced;
  };

  const view = (id: string): InstanceView => {
    const inst = host.get(id);
    if (!inst) throw new AgentError("ROSTER_NOT_FOUND", `no instance "${id}" on this host`);
    return host.view(inst);
  };

  const ops: AgentOps = {
    info: () => ({ hostId: host.hostId, epoch: host.epoch, natsConnected: link.isConnected, draining: host.draining, instances: host.size }),
    list: () => host.list(),
    get: view,
    upsert: (input: ServiceInput) => {
      const ctx = { hostId: host.hostId, defaultAddress: deps.defaultAddress ?? "127.0.0.1", baseDir: deps.baseDir ?? process.cwd(), ...(host.zone ? { zone: host.zone } : {}) };
      const r = resolveInstance(input, ctx);
      if (!r.ok) {
        const issues = r.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
        throw Object.assign(new AgentError("ROSTER_BAD_REQUEST", `invalid instance: ${issues.join("; ")}`), { issues });
      }
      const replaced = addInstance(r.value, "api");
      log.info({ service: r.value.service, instanceId: r.value.id, replaced }, "instance registered via API");
      return { id: r.value.id, replaced };
    },
    remove: (id: string) => {
      const msgs = host.remove(id, now(), "api");
      scheduler.remove(id);
      publishAll(msgs);
      log.info({ instanceId: id }, "instance deregistered via API");
    },
    maintenance: (id, enable, reason) => {
      const msgs = host.setMaintenance(id, enable, reason, now());
      publishAll(msgs);
      if (msgs.length) log.info({ instanceId: id, enable, reason }, "maintenance changed");
    },
    ttlReport: (id, checkId, verdict, note) => {
      host.ttlCheck(id, checkId);
      const result: CheckResult = { status: VERDICT[verdict] };
      if (note !== undefined) result.output = note;
      scheduler.report(id, checkId, result);
    },
  };

  const stopAll = async () => {
    if (heartbeat) clearInterval(heartbeat);
    heartbeat = undefined;
    await scheduler.close();
    await link.close();
    if (api) await api.close();
    api = null;
  };

  const agent: Agent = {
    ...ops,
    host,
    link,
    metrics,
    async start() {
      for (const spec of config.services) addInstance(spec, "config");
      link.start();
      heartbeat = setInterval(() => publishAll([host.heartbeat(now())]), config.heartbeatIntervalMs);
      api = buildApi(ops, log, config.api, metrics.registry);
      const address = await api.listen({ host: config.api.host, port: config.api.port });
      log.info({ epoch: host.epoch, instances: host.size, api: address }, "agent started");
      return { apiUrl: address };
    },
    shutdown(opts = {}) {
      shutdownPromise ??= (async () => {
        log.info({ drainPeriodMs: config.drainPeriodMs, instances: host.size }, "shutting down: draining every instance");
        publishAll(host.beginShutdown(now()));
        await link.flush();
        await new Promise<void>((resolve) => {
          if (opts.skipWait?.aborted) return resolve();
          const t = setTimeout(resolve, config.drainPeriodMs);
          opts.skipWait?.addEventListener("abort", () => {
            clearTimeout(t);
            log.info("drain wait cut short");
            resolve();
          }, { once: true });
        });
        if (heartbeat) clearInterval(heartbeat);
        heartbeat = undefined;
        await scheduler.close();
        publishAll(host.shutdownDeregister(now()));
        await link.flush();
        closed = true;
        await stopAll();
        log.info("agent stopped");
      })();
      return shutdownPromise;
    },
    async close() {
      if (closed) return;
      closed = true;
      await stopAll();
    },
    async [Symbol.asyncDispose]() {
      await agent.close();
    },
  };
  return agent;
}
