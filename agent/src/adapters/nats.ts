import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { AgentMessage, agentSubject, decode, encode, redactServers, redactUrl, resyncSubject, ResyncMessage, ValidationError, type NatsConnectOptions } from "roster-schemas";
import type { Outbound } from "../core/host.js";

export interface NatsLinkOptions {
  servers: string | string[];
  hostId: string;
  log: Logger;
  /** Client name shown by the server (`roster-agent/<host>`). */
  name?: string;
  /** Called on the first connect and on every reconnect: republish the full state. */
  onConnected: (why: "connect" | "reconnect") => void;
  /** The registry asked for a full registration. */
  onResync: (msg: ResyncMessage) => void;
  /** Backoff between failed initial connects, and the client's reconnect wait. */
  retryMs?: number;
  /** Authenticator and TLS from the shared NATS auth settings (natsConnectOptions). */
  auth?: Omit<NatsConnectOptions, "servers">;
}

export interface NatsLinkStats {
  connected: boolean;
  published: number;
  /** Messages not sent because NATS was unreachable (the next register carries the state). */
  droppedDisconnected: number;
  /** Resync messages that failed validation or named another host. */
  droppedInvalidResync: number;
}

/**
 * The agent's NATS connection. Never throws at its callers and never crashes the agent:
 * the first connect is retried in the background for as long as it takes, the client
 * reconnects forever afterwards, and while disconnected messages are dropped (counted)
 * rather than buffered — the register published on every (re)connect carries the state.
 */
export class NatsLink {
  private nc: NatsConnection | null = null;
  private connected = false;
  private closed = false;
  private wake: (() => void) | null = null;
  private readonly stats: Omit<NatsLinkStats, "connected"> = { published: 0, droppedDisconnected: 0, droppedInvalidResync: 0 };
  private readonly retryMs: number;
  /** Messages published, by kind (read by the metrics at scrape time). */
  readonly publishedByKind: Record<Outbound["kind"], number> = { register: 0, heartbeat: 0, health: 0, deregister: 0 };

  constructor(private readonly opts: NatsLinkOptions) {
    this.retryMs = opts.retryMs ?? 500;
  }

  get isConnected(): boolean {
    return this.connected;
  }

  snapshot(): NatsLinkStats {
    return { connected: this.connected, ...this.stats };
  }

  start(): void {
    void this.connectLoop();
  }

  private async connectLoop(): Promise<void> {
    const { log } = this.opts;
    let attempt = 0;
    while (!this.closed) {
      attempt += 1;
      try {
        const nc = await connect({
          ...this.opts.auth,
          servers: this.opts.servers,
          name: this.opts.name ?? `roster-agent/${this.opts.hostId}`,
          maxReconnectAttempts: -1,
          reconnectTimeWait: this.retryMs,
          timeout: 2000,
        });
        if (this.closed) {
          await nc.close().catch(() => undefined);
          return;
        }
        this.adopt(nc);
        return;
      } catch (err) {
        if (attempt === 1 || attempt % 20 === 0) {
          log.warn({ servers: redactServers(this.opts.servers), attempt, err: (err as Error).message }, "nats unreachable: checks keep running, retrying in the background");
        }
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.min(this.retryMs * 2 ** Math.min(attempt - 1, 3), 2000));
          this.wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        this.wake = null;
      }
    }
  }

  private adopt(nc: NatsConnection): void {
    const { log } = this.opts;
    this.nc = nc;
    this.connected = true;
    log.info({ server: redactUrl(nc.getServer()) }, "nats connected");
    nc.subscribe(resyncSubject(this.opts.hostId), {
      callback: (err, m) => {
        if (err) return;
        const r = decode(ResyncMessage, m.data);
        if (!r.ok || r.value.hostId !== this.opts.hostId) {
          this.stats.droppedInvalidResync += 1;
          log.warn({ reason: r.ok ? "wrong-host" : r.reason, error: r.ok ? undefined : r.error }, "dropped an invalid resync message");
          return;
        }
        log.info({ reason: r.value.reason }, "registry asked for a resync");
        this.opts.onResync(r.value);
      },
    });
    void (async () => {
      for await (const s of nc.status()) {
        switch (s.type) {
          case "disconnect":
            if (this.connected) log.warn({ server: s.server }, "nats disconnected: checks keep running, reconnecting");
            this.connected = false;
            break;
          case "reconnect":
            this.connected = true;
            log.info({ server: s.server }, "nats reconnected");
            this.safe(() => this.opts.onConnected("reconnect"));
            break;
          default:
            break;
        }
      }
    })().catch(() => undefined);
    void nc.closed().then((err) => {
      this.connected = false;
      if (this.nc === nc) this.nc = null;
      if (!this.closed) {
        log.error({ err: err?.message }, "nats connection closed unexpectedly: connecting again");
        void this.connectLoop();
      }
    });
    this.safe(() => this.opts.onConnected("connect"));
  }

  private safe(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.opts.log.error({ err }, "nats connect handler failed");
    }
  }

  /** Validates, encodes and publishes; false when not sent (disconnected). */
  publish(msg: Outbound): boolean {
    const nc = this.nc;
    if (!nc || !this.connected || this.closed) {
      this.stats.droppedDisconnected += 1;
      return false;
    }
    let bytes: Uint8Array;
    try {
      bytes = encode(AgentMessage, msg, msg.kind);
    } catch (err) {
      if (!(err instanceof ValidationError) || msg.kind !== "register") throw err;
      // A register over the size limit: send it without check outputs rather than not at all.
      this.opts.log.warn({ issues: err.issues }, "register too large: sending it without check outputs");
      const slim = { ...msg, instances: msg.instances.map((i) => ({ ...i, checks: i.checks.map(({ output: _o, ...c }) => c) })) };
      bytes = encode(AgentMessage, slim, msg.kind);
    }
    try {
      nc.publish(agentSubject(this.opts.hostId, msg.kind), bytes);
      this.stats.published += 1;
      this.publishedByKind[msg.kind] += 1;
      return true;
    } catch (err) {
      this.stats.droppedDisconnected += 1;
      this.opts.log.warn({ err: (err as Error).message, kind: msg.kind }, "publish failed");
      return false;
    }
  }

  /** Waits until the server has everything published so far (bounded). */
  async flush(timeoutMs = 2000): Promise<void> {
    const nc = this.nc;
    if (!nc || !this.connected) return;
    await withTimeout(nc.flush(), timeoutMs).catch(() => undefined);
  }

  /** Drains (flushes) and closes; bounded so a dead server cannot hold the shutdown. */
  async close(timeoutMs = 3000): Promise<void> {
    this.closed = true;
    this.wake?.();
    const nc = this.nc;
    this.nc = null;
    this.connected = false;
    if (!nc) return;
    try {
      await withTimeout(nc.drain(), timeoutMs);
    } catch {
      await nc.close().catch(() => undefined);
    }
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${ms}ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}
