import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { isAlive, stopProcess } from "./process.js";

export interface NatsServerOptions {
  /** Enable JetStream (default true). */
  jetstream?: boolean;
  /** Extra command-line arguments. */
  args?: string[];
  /** A server config file (`-c`): accounts, users, permissions, TLS. Address, port and store still come from the kit. */
  configFile?: string;
  /** Print the server's log to stderr (default: only when ROSTER_TEST_VERBOSE is set). */
  verbose?: boolean;
}

const BINARY = process.env.NATS_SERVER_BIN ?? "nats-server";

/** Fails loudly — never a silent skip — when the binary is missing. */
export function assertNatsServerInstalled(): void {
  const r = spawnSync(BINARY, ["--version"], { encoding: "utf8" });
  if (r.error || r.status !== 0) {
    throw new Error(
      `nats-server not found (${BINARY}): install it with "apt-get install -y nats-server" or set NATS_SERVER_BIN`,
    );
  }
}

/** How the server comes back in `start()` / `restart()`. */
export interface NatsRestartOptions {
  /** Remove the JetStream store first: a node back with a lost volume. */
  wipeStore?: boolean;
  /** Run with or without JetStream from now on (default: as before). */
  jetstream?: boolean;
}

/**
 * A real nats-server on a free port, for one test file. `stop()` / `start()` / `restart()`
 * cause outages while keeping the JetStream store (unless `wipeStore`) and the port, so clients
 * reconnect to the same URL.
 */
export class NatsServer {
  readonly storeDir: string;
  port = 0;
  private proc: ChildProcess | null = null;
  private readonly workDir: string;
  private opts: NatsServerOptions;

  private constructor(workDir: string, opts: NatsServerOptions) {
    this.workDir = workDir;
    this.storeDir = join(workDir, "store");
    this.opts = opts;
  }

  static async start(opts: NatsServerOptions = {}): Promise<NatsServer> {
    assertNatsServerInstalled();
    const dir = await mkdtemp(join(tmpdir(), "roster-nats-"));
    const server = new NatsServer(dir, opts);
    await server.start();
    return server;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return isAlive(this.proc);
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  async start(restart: NatsRestartOptions = {}): Promise<void> {
    if (this.running) return;
    if (restart.wipeStore) await rm(this.storeDir, { recursive: true, force: true });
    if (restart.jetstream !== undefined) this.opts = { ...this.opts, jetstream: restart.jetstream };
    const portsDir = join(this.workDir, `ports-${Date.now()}`);
    const args = [...(this.opts.configFile ? ["-c", this.opts.configFile] : []), "-a", "127.0.0.1", "-p", String(this.port || -1), "--ports_file_dir", portsDir];
    if (this.opts.jetstream !== false) args.push("-js", "-sd", this.storeDir);
    args.push(...(this.opts.args ?? []));
    const { mkdir } = await import("node:fs/promises");
    await mkdir(portsDir, { recursive: true });
    const verbose = this.opts.verbose ?? Boolean(process.env.ROSTER_TEST_VERBOSE);
    const proc = spawn(BINARY, args, { stdio: ["ignore", "ignore", verbose ? "inherit" : "pipe"] });
    this.proc = proc;
    let stderr = "";
    proc.stderr?.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error(`nats-server exited with ${proc.exitCode}: ${stderr}`);
      const files = await readdir(portsDir).catch(() => [] as string[]);
      const file = files.find((f) => f.endsWith(".ports"));
      if (file) {
        const text = await readFile(join(portsDir, file), "utf8").catch(() => "");
        try {
          const info = JSON.parse(text) as { nats?: string[] };
          const url = info.nats?.[0];
          if (url) {
            this.port = Number(new URL(url).port);
            // The ports file is written after the listener is up; JetStream may lag a little.
            await sleep(50);
            return;
          }
        } catch {
          // partially written: read again
        }
      }
      await sleep(20);
    }
    proc.kill("SIGKILL");
    throw new Error(`nats-server did not report its ports within 10s: ${stderr}`);
  }

  /** Stops the server; `signal` SIGKILL for a crash, SIGTERM (default) for a clean stop. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    if (!this.proc) return;
    await stopProcess(this.proc, signal);
    this.proc = null;
  }

  async restart(signal: NodeJS.Signals = "SIGTERM", opts: NatsRestartOptions = {}): Promise<void> {
    await this.stop(signal);
    await this.start(opts);
  }

  /** Stops the server and removes its store. */
  async close(): Promise<void> {
    await this.stop("SIGKILL");
    await rm(this.workDir, { recursive: true, force: true });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
