/**
 * The read-only front doors beside the HTTP API: the xDS (Envoy ADS) server, the DNS interface
 * and the Consul-compatible read API, built and started together from config: app.ts only calls
 * start() after its HTTP listener and close() before it. All read `memory`, the same KV-confirmed
 * view every replica (writer or standby) keeps.
 */
import type { Logger } from "pino";
import type { Registry as PromRegistry } from "prom-client";
import type { RegistryConfig } from "../config.js";
import { splitHostPort } from "../config.js";
import type { CatalogMemory } from "./store/catalog-memory.js";
import { buildConsulApi } from "./consul/server.js";
import { DnsServer } from "./dns/server.js";
import { XdsServer } from "./xds/server.js";

export interface FrontDoors {
  start(): Promise<void>;
  close(): Promise<void>;
  /** "host:port" of the DNS listener (UDP and TCP), or null when off. */
  readonly dnsAddress: string | null;
  /** Base URL of the Consul-compatible API, or null when off. */
  readonly consulUrl: string | null;
  readonly dns: DnsServer | null;
  /** The xDS server (config `xds`), or null when off. */
  readonly xds: XdsServer | null;
}

export function buildFrontDoors(
  config: RegistryConfig,
  deps: {
    memory: CatalogMemory;
    loaded: () => boolean;
    ready: () => boolean;
    /** Resolves once the catalog is loaded: xDS holds its first responses until then. */
    whenReady: Promise<void>;
    /** The registry's metrics registry (xDS metrics go on it). */
    metrics: PromRegistry;
    /** This replica's id (xDS `control_plane.identifier`). */
    registryId: string;
    logger: Logger;
  },
): FrontDoors {
  const xdsCfg = config.xds;
  const xds = xdsCfg
    ? new XdsServer({ config: xdsCfg, memory: deps.memory, loaded: deps.whenReady, auth: config.http.auth, logger: deps.logger.child({ component: "xds" }), metrics: deps.metrics, registryId: deps.registryId })
    : null;
  const dnsCfg = config.dns;
  const dns = dnsCfg.listen
    ? new DnsServer(
        {
          ...splitHostPort(dnsCfg.listen),
          domain: dnsCfg.domain,
          ttlSeconds: Math.floor(dnsCfg.ttl / 1000),
          onlyPassing: dnsCfg.onlyPassing,
          maxUdpBytes: dnsCfg.maxUdpSize,
          rateLimit: dnsCfg.rateLimit,
          maxTcpConnections: dnsCfg.maxTcpConnections,
          tcpIdleMs: dnsCfg.tcpIdleTimeout,
        },
        { catalog: deps.memory, loaded: deps.loaded, logger: deps.logger.child({ component: "dns" }) },
      )
    : null;
  const consul = config.consulApi.listen
    ? buildConsulApi({
        catalog: deps.memory,
        loaded: deps.loaded,
        ready: deps.ready,
        datacenter: config.consulApi.datacenter,
        nodeName: config.consulApi.nodeName,
        maxBlockingWaitMs: Math.min(config.maxBlockingWait, 600_000),
        logger: deps.logger.child({ component: "consul-api" }),
        security: config.http,
      })
    : null;
  let consulUrl: string | null = null;
  return {
    async start() {
      // A port in use names the listener (the process then exits 1 with this message).
      const named = (what: string, listen: string | undefined) => (err: unknown) => {
        throw new Error(`${what} (${listen}): ${(err as Error).message}`, { cause: err });
      };
      if (xds) await xds.listen().catch(named("cannot start the xDS listener", xdsCfg?.listen));
      if (dns) {
        const address = await dns.start().catch(named("cannot start the DNS listener", dnsCfg.listen));
        deps.logger.info({ dns: address, domain: dnsCfg.domain }, "DNS listening (UDP and TCP)");
        if (!/^(127\.|\[::1\]|localhost)/.test(address)) {
          deps.logger.warn({ dns: address }, "DNS listens beyond loopback: DNS has no credentials, anyone who reaches it can read service addresses");
        }
      }
      if (consul && config.consulApi.listen) {
        const { host, port } = splitHostPort(config.consulApi.listen);
        consulUrl = await consul.listen({ host, port }).catch(named("cannot start the Consul API listener", config.consulApi.listen));
        consul.listenAddress = consulUrl.replace(/^https?:\/\//, "");
        deps.logger.info({ url: consulUrl }, "Consul-compatible API listening");
      }
    },
    async close() {
      await Promise.all([xds?.close(), dns?.close(), consul?.close()]);
    },
    get dnsAddress() {
      return dns?.address || null;
    },
    get consulUrl() {
      return consulUrl;
    },
    dns,
    xds,
  };
}
