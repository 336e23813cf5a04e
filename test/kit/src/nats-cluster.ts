import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assertNatsServerInstalled } from "./nats-server.js";
import { freePort } from "./net.js";
import { isAlive, stopProcess } from "./process.js";
import { waitFor } from "./wait.js";

export interface NatsClusterOptions {
  /** Number of nodes (default 3: the smallest cluster that survives the loss of one). */
  size?: number;
  /** Print the servers' logs to stderr (default: only when ROSTER_TEST_VERBOSE is set). */
  verbose?: boolean;
  /** Longest wait for the cluster to form and elect a JetStream meta leader (default 30 s). */
  formTimeoutMs?: number;
}

const BINARY = process.env.NATS_SERVER_BIN ?? "nats-server";
const CLUSTER_NAME = "roster-test";

/** What `/jsz` of nats-server 2.9 answers (the fields used here). */
interface Jsz {
  meta_cluster?: { name?: string; leader?: string; cluster_size?: number; replicas?: { name: string; current: boolean }[] };
  account_details?: { stream_detail?: { name: string; cluster?: { leader?: string } }[] }[];
}

async function fetchJson<T>(url: string, timeoutMs = 2000): Promise<T> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  try {
    const res = await fetch(url, { signal: ac.signal });
    if (!res.ok) throw new Error(`GET ${url}: ${res.status}`);
    return (await res.json()) as T;
  } finally {
    clearTimeout(timer);
  }
}

/** One node of a NatsCluster: fixed ports and store, so a stopped node comes back as itself. */
export class NatsClusterNode {
  private proc: ChildProcess | null = null;
  private stderr = "";

  constructor(
    readonly name: string,
    readonly port: number,
    readonly clusterPort: number,
    readonly httpPort: number,
    readonly configFile: string,
    private readonly verbose: boolean,
  ) {}

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get monitorUrl(): string {
    return `http://127.0.0.1:${this.httpPort}`;
  }

  get running(): boolean {
    return isAlive(this.proc);
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** The last few KiB of the server's log (for a failure message). */
  get log(): string {
    return this.stderr;
  }

  /** Starts the server and waits until its monitoring endpoint answers (bounded: 10 s). */
  async start(): Promise<void> {
    if (this.running) return;
    const proc = spawn(BINARY, ["-c", this.configFile], { stdio: ["ignore", "ignore", this.verbose ? "inherit" : "pipe"] });
    this.proc = proc;
    proc.stderr?.on("data", (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-8000);
    });
    try {
      await waitFor(
        async () => {
          if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`exited with ${proc.exitCode ?? proc.signalCode}: ${this.stderr.slice(-2000)}`);
          return (await fetch(`${this.monitorUrl}/healthz`).catch(() => null)) !== null;
        },
        { timeoutMs: 10_000, intervalMs: 50, what: `nats-server ${this.name} monitoring endpoint` },
      );
    } catch (err) {
      proc.kill("SIGKILL");
      throw err;
    }
  }

  /** Stops the server; `signal` SIGKILL for a crash, SIGTERM (default) for a clean stop. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    if (!this.proc) return;
    await stopProcess(this.proc, signal);
    this.proc = null;
  }

  /** `/jsz` of this node (with stream details when `streams`). */
  async jsz(streams = false): Promise<Jsz> {
    return fetchJson<Jsz>(`${this.monitorUrl}/jsz${streams ? "?accounts=true&streams=true" : ""}`);
  }
}

/**
 * A real JetStream cluster of `size` nats-server processes on 127.0.0.1, for one test file or
 * benchmark: each node has its own config file, store, client, cluster and monitoring port, and
 * routes to every other. `nodes[i].stop("SIGKILL")` / `.start()` cause node losses; clients
 * given every URL (`urls`) fail over.
 */
export class NatsCluster {
  readonly nodes: NatsClusterNode[];
  private readonly workDir: string;
  private readonly formTimeoutMs: number;

  private constructor(workDir: string, nodes: NatsClusterNode[], formTimeoutMs: number) {
    this.workDir = workDir;
    this.nodes = nodes;
    this.formTimeoutMs = formTimeoutMs;
  }

  static async start(opts: NatsClusterOptions = {}): Promise<NatsCluster> {
    assertNatsServerInstalled();
    const size = opts.size ?? 3;
    if (!Number.isInteger(size) || size < 1) throw new Error(`NatsCluster size must be a positive integer, got ${size}`);
    const verbose = opts.verbose ?? Boolean(process.env.ROSTER_TEST_VERBOSE);
    const dir = await mkdtemp(join(tmpdir(), "roster-nats-cluster-"));
    const ports: { client: number; cluster: number; http: number }[] = [];
    const taken = new Set<number>();
    const fresh = async () => {
      for (;;) {
        const p = await freePort();
        if (!taken.has(p)) {
          taken.add(p);
          return p;
        }
      }
    };
    for (let i = 0; i < size; i++) ports.push({ client: await fresh(), cluster: await fresh(), http: await fresh() });
    const nodes: NatsClusterNode[] = [];
    for (let i = 0; i < size; i++) {
      const name = `n${i + 1}`;
      const p = ports[i]!;
      const store = join(dir, name, "store");
      await mkdir(store, { recursive: true });
      const routes = ports.filter((_, j) => j !== i).map((q) => `nats-route://127.0.0.1:${q.cluster}`);
      const conf = [
        `server_name: ${name}`,
        `listen: 127.0.0.1:${p.client}`,
        `http: 127.0.0.1:${p.http}`,
        `jetstream { store_dir: ${JSON.stringify(store)} }`,
        `cluster {`,
        `  name: ${CLUSTER_NAME}`,
        `  listen: 127.0.0.1:${p.cluster}`,
        `  routes: [${routes.map((r) => JSON.stringify(r)).join(", ")}]`,
        `}`,
        "",
      ].join("\n");
      const file = join(dir, name, "nats.conf");
      await writeFile(file, conf);
      nodes.push(new NatsClusterNode(name, p.client, p.cluster, p.http, file, verbose));
    }
    const cluster = new NatsCluster(dir, nodes, opts.formTimeoutMs ?? 30_000);
    try {
      await Promise.all(nodes.map((n) => n.start()));
      await cluster.waitFormed();
    } catch (err) {
      const logs = nodes.map((n) => `--- ${n.name}\n${n.log.slice(-1500)}`).join("\n");
      await cluster.close();
      throw new Error(`${err instanceof Error ? err.message : String(err)}\n${logs}`, { cause: err });
    }
    return cluster;
  }

  /** Every client URL (give them all to a client so it fails over). */
  get urls(): string[] {
    return this.nodes.map((n) => n.url);
  }

  /**
   * Waits until every running node sees the same JetStream meta leader and all its running
   * peers as current (bounded by `formTimeoutMs`).
   */
  async waitFormed(timeoutMs = this.formTimeoutMs): Promise<string> {
    return waitFor(
      async () => {
        const running = this.nodes.filter((n) => n.running);
        const leaders = new Set<string>();
        for (const n of running) {
          const j = await n.jsz();
          const m = j.meta_cluster;
          if (!m?.leader) return undefined;
          leaders.add(m.leader);
          // The leader lists its followers: every other running node must be current.
          if (m.leader === n.name) {
            const current = new Set((m.replicas ?? []).filter((r) => r.current).map((r) => r.name));
            if (running.some((o) => o !== n && !current.has(o.name))) return undefined;
          }
        }
        const [leader] = leaders;
        return leaders.size === 1 && running.some((n) => n.name === leader) ? leader : undefined;
      },
      { timeoutMs, intervalMs: 100, what: "the NATS cluster to form with one JetStream meta leader" },
    );
  }

  /**
   * The node leading `stream` (e.g. "KV_roster_catalog"), as seen by the running nodes'
   * `/jsz`; undefined while no leader is known (during an election).
   */
  async leaderOf(stream: string): Promise<NatsClusterNode | undefined> {
    for (const n of this.nodes.filter((x) => x.running)) {
      const j = await n.jsz(true).catch(() => undefined);
      for (const acc of j?.account_details ?? []) {
        const s = (acc.stream_detail ?? []).find((d) => d.name === stream);
        const leader = s?.cluster?.leader;
        if (leader) {
          const node = this.nodes.find((x) => x.name === leader && x.running);
          if (node) return node;
        }
      }
    }
    return undefined;
  }

  /** Waits (bounded) for a running node to lead `stream`. */
  async waitLeaderOf(stream: string, timeoutMs = 15_000): Promise<NatsClusterNode> {
    return waitFor(() => this.leaderOf(stream), { timeoutMs, intervalMs: 100, what: `a leader of stream ${stream}` });
  }

  /** Stops every node and removes the stores. */
  async close(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop("SIGKILL")));
    await rm(this.workDir, { recursive: true, force: true });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
