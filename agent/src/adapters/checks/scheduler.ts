import type { Logger } from "pino";
import type { CheckSpec } from "../../config.js";
import type { CheckResult } from "../../core/check.js";
import { probeExec, type ExecOptions } from "./exec.js";
import type { GrpcProber } from "./grpc.js";
import { HttpProber } from "./http.js";
import { probeTcp } from "./tcp.js";

export type ResultSink = (instanceId: string, checkId: string, result: CheckResult) => void;
/** Told of every result with its check type, and for an active check how long the probe took. */
export type RunObserver = (type: CheckSpec["type"], result: CheckResult, durationMs: number | undefined) => void;

interface Loop {
  stop(): void;
  /** TTL checks only: a report from the service. */
  report?(result: CheckResult): void;
}

/**
 * Runs every check of every instance on its own timer and hands each result to `sink`
 * (which feeds the threshold machine). Active checks run once at once, then `interval`
 * after the previous run ended (runs of one check never overlap). TTL checks are a timer
 * re-armed by each report; when it fires the sink gets a critical "TTL expired" result.
 */
export class CheckScheduler {
  private readonly loops = new Map<string, Map<string, Loop>>();
  private readonly http = new HttpProber();
  /** Loaded on the first grpc check: @grpc/grpc-js costs an agent without one nothing at start. */
  private grpc: Promise<GrpcProber> | null = null;
  private closed = false;

  constructor(
    private readonly sink: ResultSink,
    private readonly log: Logger,
    private readonly observe?: RunObserver,
    /** Environment, output cap and redaction for exec checks. */
    private readonly execOptions: ExecOptions = {},
  ) {}

  /** Starts (or restarts) the checks of an instance. */
  set(instanceId: string, checks: CheckSpec[]): void {
    this.remove(instanceId);
    if (this.closed) return;
    const loops = new Map<string, Loop>();
    for (const spec of checks) loops.set(spec.id, spec.type === "ttl" ? this.ttlLoop(instanceId, spec) : this.activeLoop(instanceId, spec));
    this.loops.set(instanceId, loops);
  }

  remove(instanceId: string): void {
    const loops = this.loops.get(instanceId);
    if (!loops) return;
    for (const l of loops.values()) l.stop();
    this.loops.delete(instanceId);
  }

  /** A TTL report; returns false when there is no such running ttl check. */
  report(instanceId: string, checkId: string, result: CheckResult): boolean {
    const loop = this.loops.get(instanceId)?.get(checkId);
    if (!loop?.report) return false;
    loop.report(result);
    return true;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const id of [...this.loops.keys()]) this.remove(id);
    if (this.grpc) (await this.grpc).close();
    await this.http.close();
  }

  private deliver(instanceId: string, checkId: string, result: CheckResult): void {
    try {
      this.sink(instanceId, checkId, result);
    } catch (err) {
      this.log.error({ err, instanceId, checkId }, "check result handler failed");
    }
  }

  private run(spec: Exclude<CheckSpec, { type: "ttl" }>, signal: AbortSignal): Promise<CheckResult> {
    switch (spec.type) {
      case "http":
        return this.http.probe(spec, signal);
      case "tcp":
        return probeTcp(spec, signal);
      case "grpc":
        this.grpc ??= import("./grpc.js").then((m) => new m.GrpcProber());
        return this.grpc.then((p) => p.probe(spec, signal));
      case "exec":
        return probeExec(spec, signal, this.execOptions);
    }
  }

  private activeLoop(instanceId: string, spec: Exclude<CheckSpec, { type: "ttl" }>): Loop {
    const ac = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const tick = async () => {
      timer = undefined;
      let result: CheckResult;
      const started = performance.now();
      try {
        result = await this.run(spec, ac.signal);
      } catch (err) {
        this.log.error({ err, instanceId, checkId: spec.id }, "check runner failed");
        result = { status: "critical", output: `internal error: ${(err as Error).message}` };
      }
      if (ac.signal.aborted) return;
      this.observe?.(spec.type, result, performance.now() - started);
      this.deliver(instanceId, spec.id, result);
      timer = setTimeout(() => void tick(), spec.intervalMs);
    };
    timer = setTimeout(() => void tick(), 0);
    return {
      stop: () => {
        ac.abort();
        if (timer) clearTimeout(timer);
      },
    };
  }

  private ttlLoop(instanceId: string, spec: Extract<CheckSpec, { type: "ttl" }>): Loop {
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        if (stopped) return;
        const expired: CheckResult = { status: "critical", output: `TTL expired: no report within ${spec.ttlMs}ms` };
        this.observe?.("ttl", expired, undefined);
        this.deliver(instanceId, spec.id, expired);
      }, spec.ttlMs);
    };
    arm();
    return {
      stop: () => {
        stopped = true;
        if (timer) clearTimeout(timer);
      },
      report: (result) => {
        if (stopped) return;
        arm();
        this.observe?.("ttl", result, undefined);
        this.deliver(instanceId, spec.id, result);
      },
    };
  }
}
