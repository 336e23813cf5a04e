/**
 * The registry's xDS server: Envoy v3 Aggregated Discovery Service (state of the world) over
 * gRPC, serving the in-memory catalog read-only. Runs inside each registry replica: every replica
 * already holds the whole catalog in memory (the writer from its own writes, a standby from its
 * KV mirror) and learns of each change the moment it lands, so an xDS update leaves at the same
 * time as the NATS delta, with no extra hop, process or subscription to operate.
 *
 * Transport only: what each stream subscribed to and what it ACKed is `core/xds-stream.ts`;
 * the resources are `core/xds-resources.ts`; encoded resources are cached per service revision,
 * and each DiscoveryResponse of a push is encoded once, nonce included, and the same bytes are
 * written to every stream it goes to: N streams watching one service cost one encode per change.
 */
import * as grpc from "@grpc/grpc-js";
import { BearerAuth, type HttpAuthConfig } from "roster-schemas";
import type { Logger } from "pino";
import type protobuf from "protobufjs";
import { performance } from "node:perf_hooks";
import { Counter, Gauge, Histogram, type Registry as PromRegistry } from "prom-client";
import { splitHostPort } from "../../config.js";
import { TYPE_URL, XDS_KINDS, buildResource, type XdsKind, type XdsResourceOptions } from "../../core/xds-resources.js";
import { XdsStreamState, type RequestOutcome } from "../../core/xds-stream.js";
import { XdsDeltaState, type DeltaOutcome } from "../../core/xds-delta.js";
import type { InFlight, XdsStreamBase } from "../../core/xds-nonces.js";
import type { CatalogMemory } from "../store/catalog-memory.js";
import type { XdsConfig } from "./config.js";
import { loadXdsProtos } from "./protos.js";

export const ADS_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
export const DELTA_ADS_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";
/** Longest list of resource names one request may carry. */
const MAX_NAMES = 10_000;

export interface XdsServerDeps {
  config: XdsConfig;
  memory: CatalogMemory;
  /** Resolves once the catalog is loaded (before that a client would be told "nothing exists"). */
  loaded: Promise<void>;
  /** The HTTP API's auth: the same tokens, `read` scope. Absent = no token needed. */
  auth?: HttpAuthConfig | undefined;
  logger: Logger;
  /** Metrics go on the registry's own prom-client Registry. */
  metrics?: PromRegistry;
  /** Identifies this replica in `control_plane.identifier`. */
  registryId: string;
}

interface EncodedResource {
  revision: number;
  any: { type_url: string; value: Uint8Array } | null;
}

interface Stream {
  id: number;
  call: grpc.ServerDuplexStream<Buffer, Buffer>;
  /** State of the world; or incremental (`delta`) on a DeltaAggregatedResources stream. */
  state: XdsStreamState;
  delta: XdsDeltaState | null;
  node: string;
  peer: string;
}

export interface XdsStats {
  streams: number;
  streamsOpened: number;
  refused: Record<string, number>;
  responses: number;
  nacks: number;
  stale: number;
  /** Resources encoded (each once per service revision, whatever the number of streams). */
  encodes: number;
  /** DiscoveryResponses encoded (each once per push, whatever the number of streams it goes to). */
  responseEncodes: number;
}

interface SharedResponse {
  nonce: number;
  bytes: Buffer;
}

/** The fields of a decoded DiscoveryRequest read here (protobufjs, keepCase: absent fields read as defaults). */
interface WireRequest {
  node: { id?: string } | null;
  version_info: string;
  resource_names: string[];
  type_url: string;
  response_nonce: string;
  error_detail: { code?: number; message?: string } | null;
}

interface WireDeltaRequest {
  node: { id?: string } | null;
  type_url: string;
  resource_names_subscribe: string[];
  resource_names_unsubscribe: string[];
  initial_resource_versions: Record<string, string>;
  response_nonce: string;
  error_detail: { code?: number; message?: string } | null;
}

/** A NACK's message (error_detail set), or undefined for an ACK or a subscription. */
function errorOf(req: { error_detail: { code?: number; message?: string } | null }): string | undefined {
  const e = req.error_detail;
  return e ? e.message || `code ${e.code ?? 0}` : undefined;
}

/** Bound on the shared-response cache (a push uses a few; entries of older pushes are dropped). */
const MAX_SHARED_BODIES = 64;

export class XdsServer {
  private readonly deps: XdsServerDeps;
  private readonly log: Logger;
  private readonly server = new grpc.Server({
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
    "grpc.max_receive_message_length": 4 * 1024 * 1024,
  });
  private readonly root: protobuf.Root;
  private readonly reqType: protobuf.Type;
  private readonly resType: protobuf.Type;
  private readonly deltaReqType: protobuf.Type;
  private readonly deltaResType: protobuf.Type;
  private readonly types: Record<XdsKind, protobuf.Type>;
  private readonly opts: XdsResourceOptions;
  private readonly auth: BearerAuth | null;
  private readonly streams = new Map<number, Stream>();
  private readonly cache = new Map<string, EncodedResource>();
  private readonly known = new Set<string>();
  private readonly touched = new Set<string>();
  private flushScheduled = false;
  /** When the oldest change not yet pushed was seen (performance.now), for the push-time histogram. */
  private touchedAt = 0;
  /** Encoded responses (nonce included) by (type, version, what they carry): shared by every stream of a push. */
  private readonly bodies = new Map<string, SharedResponse>();
  /** The last nonce handed out; shared by every stream that gets the same encoded response. */
  private nonceSeq = 0;
  private pushTime: Histogram | null = null;
  private isLoaded = false;
  private nextId = 0;
  private boundPort = 0;
  private unsubscribe: (() => void) | null = null;
  private closing = false;
  readonly stats: XdsStats = { streams: 0, streamsOpened: 0, refused: {}, responses: 0, nacks: 0, stale: 0, encodes: 0, responseEncodes: 0 };
  private readonly nackCounter: Counter<"type"> | null = null;

  constructor(deps: XdsServerDeps) {
    this.deps = deps;
    this.log = deps.logger;
    this.root = loadXdsProtos();
    this.reqType = this.root.lookupType("envoy.service.discovery.v3.DiscoveryRequest");
    this.resType = this.root.lookupType("envoy.service.discovery.v3.DiscoveryResponse");
    this.deltaReqType = this.root.lookupType("envoy.service.discovery.v3.DeltaDiscoveryRequest");
    this.deltaResType = this.root.lookupType("envoy.service.discovery.v3.DeltaDiscoveryResponse");
    this.types = {
      listener: this.root.lookupType("envoy.config.listener.v3.Listener"),
      route: this.root.lookupType("envoy.config.route.v3.RouteConfiguration"),
      cluster: this.root.lookupType("envoy.config.cluster.v3.Cluster"),
      endpoint: this.root.lookupType("envoy.config.endpoint.v3.ClusterLoadAssignment"),
    };
    this.opts = { warningAs: deps.config.warning === "degraded" ? "DEGRADED" : "HEALTHY" };
    this.auth = deps.auth ? new BearerAuth({ tokens: deps.auth.tokens, openReads: deps.auth.openReads }) : null;
    if (deps.metrics) this.nackCounter = this.installMetrics(deps.metrics);
    // Bytes in, bytes out: requests are decoded here, and responses arrive encoded (shared by streams).
    const bidiBytes = (path: string) => {
      const same = (b: Buffer) => b;
      return { path, requestStream: true, responseStream: true, requestSerialize: same, requestDeserialize: same, responseSerialize: same, responseDeserialize: same };
    };
    this.server.addService(
      { StreamAggregatedResources: bidiBytes(ADS_METHOD), DeltaAggregatedResources: bidiBytes(DELTA_ADS_METHOD) },
      {
        StreamAggregatedResources: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => this.onStream(call, false),
        DeltaAggregatedResources: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => this.onStream(call, true),
      },
    );
  }

  private installMetrics(registry: PromRegistry): Counter<"type"> {
    const stats = this.stats;
    const registers = [registry];
    new Gauge({ name: "roster_registry_xds_streams", help: "Open xDS (ADS) streams", registers, collect() { this.set(stats.streams); } });
    new Counter({ name: "roster_registry_xds_responses_total", help: "xDS responses sent", registers, collect() { this.reset(); this.inc(stats.responses); } });
    new Counter({
      name: "roster_registry_xds_refused_total",
      help: "xDS streams refused, by reason (unauthenticated, too-many-streams)",
      labelNames: ["reason"],
      registers,
      collect() {
        this.reset();
        for (const [reason, n] of Object.entries(stats.refused)) this.inc({ reason }, n);
      },
    });
    const nacks = new Counter({ name: "roster_registry_xds_nacks_total", help: "xDS responses a client rejected (NACK), by resource type", labelNames: ["type"], registers });
    for (const k of XDS_KINDS) nacks.inc({ type: k }, 0);
    this.pushTime = new Histogram({
      name: "roster_registry_xds_push_seconds",
      help: "From a catalog change reaching this replica's memory to the last xDS stream's write of it (the registry's own fan-out time)",
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    });
    return nacks;
  }

  /** Binds the listener (port 0 picks one: see `port`). */
  async listen(): Promise<void> {
    const { host, port } = splitHostPort(this.deps.config.listen);
    const tls = this.deps.config.tls;
    const creds = tls
      ? grpc.ServerCredentials.createSsl(tls.caFile ?? null, [{ cert_chain: tls.certFile, private_key: tls.keyFile }], tls.caFile !== undefined)
      : grpc.ServerCredentials.createInsecure();
    const target = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
    this.boundPort = await new Promise<number>((resolve, reject) => this.server.bindAsync(target, creds, (err, p) => (err ? reject(err) : resolve(p))));
    for (const s of this.deps.memory.services()) this.known.add(s.name);
    this.unsubscribe = this.deps.memory.onTouch((service) => this.onTouch(service));
    void this.deps.loaded.then(() => {
      this.isLoaded = true;
      for (const s of this.deps.memory.services()) this.known.add(s.name);
      for (const st of this.streams.values()) if (st.delta) this.pumpDelta(st);
      else this.pump(st);
    });
    this.log.info({ listen: target, port: this.boundPort, tls: tls !== undefined, auth: this.auth !== null }, "xDS (ADS) listening");
  }

  get port(): number {
    return this.boundPort;
  }

  get streamCount(): number {
    return this.streams.size;
  }

  private onTouch(service: string): void {
    if (this.touched.size === 0) this.touchedAt = performance.now();
    this.touched.add(service);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // Coalesce the changes of one turn (a register writes several instances in a row).
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.touched.size === 0) return;
    const services = [...this.touched];
    this.touched.clear();
    const appeared = new Set<string>();
    for (const s of services) {
      if (!this.known.has(s)) {
        this.known.add(s);
        appeared.add(s);
      }
    }
    if (!this.isLoaded) return;
    // A new catalog revision: responses encoded for older ones will not be sent again.
    this.bodies.clear();
    let wrote = false;
    for (const st of this.streams.values()) {
      if (st.delta) {
        st.delta.changed(services, appeared);
        if (this.pumpDelta(st)) wrote = true;
      } else {
        st.state.changed(services, appeared);
        if (this.pump(st)) wrote = true;
      }
    }
    if (wrote) this.pushTime?.observe((performance.now() - this.touchedAt) / 1000);
  }

  private refuse(call: grpc.ServerDuplexStream<Buffer, Buffer>, reason: string, code: grpc.status, details: string): void {
    this.stats.refused[reason] = (this.stats.refused[reason] ?? 0) + 1;
    this.log.warn({ peer: call.getPeer(), reason }, "xDS stream refused");
    call.emit("error", { code, details });
  }

  private onStream(call: grpc.ServerDuplexStream<Buffer, Buffer>, delta: boolean): void {
    if (this.closing) {
      call.emit("error", { code: grpc.status.UNAVAILABLE, details: "the registry is shutting down" });
      return;
    }
    if (this.auth) {
      const header = call.metadata.get("authorization")[0];
      const d = this.auth.check({ method: "GET", path: "/xds", authorization: typeof header === "string" ? header : undefined, route: "read" });
      if (!d.ok) {
        this.refuse(call, "unauthenticated", d.status === 403 ? grpc.status.PERMISSION_DENIED : grpc.status.UNAUTHENTICATED, `${d.code}: ${d.message}`);
        return;
      }
    }
    if (this.streams.size >= this.deps.config.maxStreams) {
      this.refuse(call, "too-many-streams", grpc.status.RESOURCE_EXHAUSTED, `ROSTER_TOO_MANY_STREAMS: the registry already holds ${this.deps.config.maxStreams} xDS streams (xds.maxStreams)`);
      return;
    }
    const st: Stream = { id: ++this.nextId, call, state: new XdsStreamState(), delta: delta ? new XdsDeltaState() : null, node: "", peer: call.getPeer() };
    this.streams.set(st.id, st);
    this.stats.streams = this.streams.size;
    this.stats.streamsOpened++;
    const done = () => {
      if (!this.streams.delete(st.id)) return;
      this.stats.streams = this.streams.size;
      this.log.debug({ stream: st.id, node: st.node }, "xDS stream closed");
    };
    call.on("data", (buf: Buffer) => (delta ? this.onDeltaRequest(st, buf) : this.onRequest(st, buf)));
    call.on("end", () => {
      done();
      call.end();
    });
    call.on("cancelled", done);
    call.on("error", done);
    call.on("close", done);
  }

  /**
   * Decodes a request, or ends the stream with INVALID_ARGUMENT (undecodable, or more than
   * MAX_NAMES names). The decoded message is read directly: its absent fields read as their
   * defaults, and no plain-object copy is made of every ACK.
   */
  private decodeRequest<T extends { node?: { id?: string } | null }>(st: Stream, buf: Buffer, type: protobuf.Type, nameCount: (req: T) => number): T | null {
    let req: T;
    try {
      req = type.decode(buf) as unknown as T;
    } catch (err) {
      this.log.warn({ stream: st.id, err: String(err) }, `undecodable ${type.name}: closing the stream`);
      st.call.emit("error", { code: grpc.status.INVALID_ARGUMENT, details: `ROSTER_BAD_REQUEST: undecodable ${type.name}` });
      return null;
    }
    if (nameCount(req) > MAX_NAMES) {
      st.call.emit("error", { code: grpc.status.INVALID_ARGUMENT, details: `ROSTER_BAD_REQUEST: more than ${MAX_NAMES} resource names` });
      return null;
    }
    if (req.node?.id && !st.node) st.node = req.node.id.slice(0, 200);
    return req;
  }

  private noteNack(st: Stream, fields: Record<string, unknown> & { type: XdsKind; error: string }): void {
    this.stats.nacks++;
    this.nackCounter?.inc({ type: fields.type });
    this.log.warn({ stream: st.id, node: st.node, peer: st.peer, ...fields, error: fields.error.slice(0, 2000) }, "xDS client rejected a response (NACK): it stays on its last good version");
  }

  private onRequest(st: Stream, buf: Buffer): void {
    const req = this.decodeRequest<WireRequest>(st, buf, this.reqType, (r) => r.resource_names.length);
    if (!req) return;
    const outcome: RequestOutcome = st.state.request({
      typeUrl: req.type_url,
      versionInfo: req.version_info,
      responseNonce: req.response_nonce,
      resourceNames: req.resource_names,
      errorMessage: errorOf(req),
    });
    switch (outcome.type) {
      case "unknown-type":
        this.log.debug({ stream: st.id, typeUrl: req.type_url.slice(0, 200) }, "xDS request for a type not served: ignored");
        return;
      case "stale":
        this.stats.stale++;
        return;
      case "nack":
        this.noteNack(st, { type: outcome.kind, rejected: outcome.rejected, kept: outcome.kept, error: outcome.message });
        break;
      default:
        break;
    }
    this.pump(st);
  }

  private onDeltaRequest(st: Stream, buf: Buffer): void {
    const req = this.decodeRequest<WireDeltaRequest>(st, buf, this.deltaReqType, (r) => r.resource_names_subscribe.length + r.resource_names_unsubscribe.length + Object.keys(r.initial_resource_versions).length);
    if (!req) return;
    const outcome: DeltaOutcome = st.delta!.request({
      typeUrl: req.type_url,
      subscribe: req.resource_names_subscribe,
      unsubscribe: req.resource_names_unsubscribe,
      initialVersions: req.initial_resource_versions,
      responseNonce: req.response_nonce,
      errorMessage: errorOf(req),
    });
    if (outcome.type === "unknown-type") return;
    if (outcome.type === "stale") this.stats.stale++;
    if (outcome.type === "nack") this.noteNack(st, { type: outcome.kind, delta: true, error: outcome.message });
    this.pumpDelta(st);
  }

  /** Incremental: sends the resources whose version the client does not hold, and removals. */
  private pumpDelta(st: Stream): boolean {
    const d = st.delta;
    if (!d || !this.isLoaded || this.closing) return false;
    let wrote = false;
    for (const kind of d.due()) {
      const t = d.take(kind);
      if (!t) continue;
      const names = new Set(t.names);
      if (t.all && t.wildcard && kind === "cluster") for (const n of this.known) names.add(n);
      const resources: { name: string; version: string; resource: { type_url: string; value: Uint8Array } }[] = [];
      const versions = new Map<string, string>();
      const removed: string[] = [];
      for (const n of [...names].sort()) {
        const any = this.encoded(kind, n);
        // Listener, route and cluster never change once the service is known: version "1".
        const version = any ? (kind === "endpoint" ? String(this.deps.memory.serviceRevision(n).revision) : "1") : null;
        if (!d.differs(kind, n, version)) continue;
        if (any && version) {
          resources.push({ name: n, version, resource: any });
          versions.set(n, version);
        } else removed.push(n);
      }
      if (resources.length === 0 && removed.length === 0) continue;
      const systemVersion = String(this.deps.memory.revision);
      const key = `delta\n${kind}\n${systemVersion}\n${[...versions].join(",")}\n${removed.join(",")}`;
      const body = this.shared(key, d, (nonce) => this.deltaResType.encode(this.deltaResType.fromObject({ system_version_info: systemVersion, resources, type_url: TYPE_URL[kind], removed_resources: removed, nonce })).finish());
      d.sent(kind, versions, removed, body.nonce);
      if (this.write(st, body.bytes)) wrote = true;
    }
    return wrote;
  }

  /** Sends every response that is due on this stream; true if it wrote any. */
  private pump(st: Stream): boolean {
    if (!this.isLoaded || this.closing) return false;
    let wrote = false;
    for (const kind of st.state.due()) {
      const t = st.state.take(kind);
      if (!t) continue;
      const names = t.wildcard ? (kind === "cluster" ? [...this.known].sort() : []) : t.names;
      const resources: { type_url: string; value: Uint8Array }[] = [];
      for (const n of names) {
        const r = this.encoded(kind, n);
        if (r) resources.push(r);
      }
      // Routes and endpoints are sent only when there is something: their absence means nothing.
      if (resources.length === 0 && (kind === "route" || kind === "endpoint")) continue;
      const version = String(this.deps.memory.revision);
      const key = `sotw\n${kind}\n${version}\n${names.join(",")}`;
      const body = this.shared(key, st.state, (nonce) =>
        this.resType.encode(this.resType.fromObject({ version_info: version, resources, type_url: TYPE_URL[kind], nonce, control_plane: { identifier: `roster-registry/${this.deps.registryId}` } })).finish(),
      );
      st.state.sent(kind, version, body.nonce);
      if (this.write(st, body.bytes)) wrote = true;
    }
    return wrote;
  }

  /**
   * The encoded response for `key` (type, version, what it carries), nonce included: encoded once
   * and written as the same bytes to every stream of a push. A stream that already saw a later
   * nonce (it got this response before, or a newer one) gets a fresh encoding with a new nonce,
   * so nonces stay unique per stream (XdsStreamBase).
   */
  private shared(key: string, stream: XdsStreamBase<InFlight>, encode: (nonce: string) => Uint8Array): SharedResponse {
    let body = this.bodies.get(key);
    if (!body || !stream.acceptsNonce(body.nonce)) {
      const nonce = ++this.nonceSeq;
      const u8 = encode(String(nonce));
      body = { nonce, bytes: Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength) };
      this.stats.responseEncodes++;
      if (this.bodies.size >= MAX_SHARED_BODIES) this.bodies.clear();
      this.bodies.set(key, body);
    }
    return body;
  }

  private write(st: Stream, bytes: Buffer): boolean {
    this.stats.responses++;
    try {
      st.call.write(bytes);
      return true;
    } catch (err) {
      this.log.debug({ stream: st.id, err: String(err) }, "xDS write failed");
      return false;
    }
  }

  /** The Any of resource `kind` named `service` at the service's current revision (cached). */
  private encoded(kind: XdsKind, service: string): { type_url: string; value: Uint8Array } | null {
    const { known, revision } = this.deps.memory.serviceRevision(service);
    if (!known) return null;
    const key = `${kind}/${service}`;
    const hit = this.cache.get(key);
    // Listener, route and cluster of a service never change once it is known.
    if (hit && (kind !== "endpoint" || hit.revision === revision)) return hit.any;
    const view = kind === "endpoint" ? this.deps.memory.service(service) : { known: true, instances: [] };
    const obj = buildResource(kind, service, view, this.opts);
    this.stats.encodes++;
    const type = this.types[kind];
    const any = obj ? { type_url: TYPE_URL[kind], value: type.encode(type.fromObject(obj)).finish() } : null;
    this.cache.set(key, { revision, any });
    return any;
  }

  /** Open streams and what each subscribed to (for status and tests). */
  streamsStatus(): Array<{ id: number; node: string; peer: string; types: ReturnType<XdsStreamState["status"]> }> {
    return [...this.streams.values()].map((s) => ({ id: s.id, node: s.node, peer: s.peer, types: s.state.status() }));
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.unsubscribe?.();
    for (const st of this.streams.values()) {
      try {
        st.call.end();
      } catch {
        // already gone
      }
    }
    this.streams.clear();
    this.stats.streams = 0;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 2000);
      this.server.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}
