// Forked by bench/xds-fanout.mjs: N ADS streams (raw grpc-js, each on its own HTTP/2 connection,
// ACKing every response as a client does) plus one NATS subscriber of the flipped service's
// catalog deltas, so both legs are timed by the same clock in the same process.
//   IPC in:  { type: "open", port, n, names: [..] , tag }   open n streams on names (CDS + EDS)
//            { type: "expect", k, service, id, status }      the parent is about to flip (service, id)
//            { type: "close", tag }
//            { type: "report", tag }  → { type: "report", tag, streams: [[[version, at], ...], ...] }
//            (every EDS response's version and receive time, per stream: bench/gateway-fanout.mjs
//            matches them to its flips' catalog revisions, since version_info is the revision)
//   IPC out: { type: "opened", tag, firstAt, lastAt, bytes } every stream holds the EDS of names
//            { type: "seen", k, xdsFirst, xdsLast, decodedLast, delta }
//                                    flip k reached every stream (arrived; decoded) / the delta
// bench/lib/xds-load.mjs spreads N streams over several of these processes.
import * as grpc from "@grpc/grpc-js";
import { connect } from "@nats-io/transport-node";
import { CatalogDelta, catalogSubject, decode } from "roster-schemas";
import { loadXdsProtos } from "../../registry/dist/src/adapters/xds/protos.js";
import { argvOption } from "./wire-fleet.mjs";

const root = loadXdsProtos();
const Req = root.lookupType("envoy.service.discovery.v3.DiscoveryRequest");
const Res = root.lookupType("envoy.service.discovery.v3.DiscoveryResponse");
const Cla = root.lookupType("envoy.config.endpoint.v3.ClusterLoadAssignment");
const CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
const HEALTH = ["UNKNOWN", "HEALTHY", "UNHEALTHY", "DRAINING", "TIMEOUT", "DEGRADED"];
const now = () => performance.timeOrigin + performance.now();
const id = (b) => b;

const groups = new Map(); // tag → streams
let expect = null; // { k, service, id, want, seen: Set<stream>, first, last, delta }

function reqBuf(typeUrl, names, version, nonce) {
  return Buffer.from(Req.encode(Req.fromObject({ node: { id: "bench-load" }, type_url: typeUrl, resource_names: names, version_info: version, response_nonce: nonce })).finish());
}

function openStream(port, names, onEds) {
  const seen = [];
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1, "grpc.max_receive_message_length": 64 * 1024 * 1024 });
  const call = client.makeBidiStreamRequest("/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources", id, id);
  const s = { client, call, seen };
  call.on("data", (b) => {
    const at = now();
    const r = Res.decode(b);
    // ACK at once: the server keeps one response per type in flight per stream.
    call.write(reqBuf(r.type_url, names, r.version_info, r.nonce));
    if (r.type_url !== EDS) return;
    seen.push([Number(r.version_info), at]);
    // Decoded only by a consumer that needs the endpoints: a load generator that decodes 100
    // copies of every cluster competes for the same 2 cores as what it measures.
    for (const any of r.resources) onEds(s, () => Cla.decode(any.value), at, b.length);
  });
  call.on("error", () => undefined);
  call.write(reqBuf(CDS, names, "", ""));
  call.write(reqBuf(EDS, names, "", ""));
  return s;
}

function statusIn(cla, instanceId) {
  for (const loc of cla.endpoints) for (const e of loc.lb_endpoints) if (e.endpoint?.hostname === instanceId) return HEALTH[e.health_status] ?? String(e.health_status);
  return null;
}

const nc = await connect({ servers: argvOption("nats", "nats://127.0.0.1:4222") });
const flipService = argvOption("flip-service", "svc-flip");
nc.subscribe(catalogSubject(flipService), {
  callback: (_err, m) => {
    const at = now();
    const d = decode(CatalogDelta, m.data);
    if (!d.ok || !expect || expect.delta) return;
    if (d.value.op === "put" && d.value.instanceId === expect.id && d.value.instance.status === expect.status) {
      expect.delta = at;
      maybeDone();
    }
  },
});

function maybeDone() {
  const e = expect;
  if (!e || !e.delta || e.seen.size < e.n) return;
  process.send({ type: "seen", k: e.k, xdsFirst: e.first, xdsLast: e.last, decodedLast: e.decodedLast, delta: e.delta });
  expect = null;
}

process.on("message", (m) => {
  if (m.type === "open") {
    const streams = [];
    const got = new Set();
    let first = 0;
    let last = 0;
    let bytes = 0;
    const t0 = now();
    for (let i = 0; i < m.n; i++) {
      streams.push(
        openStream(m.port, m.names, (s, lazyCla, at, size) => {
          let decoded = null;
          const cla = () => (decoded ??= lazyCla());
          if (!got.has(s) && cla().endpoints.reduce((a, l) => a + l.lb_endpoints.length, 0) >= m.minEndpoints) {
            got.add(s);
            first ||= at;
            last = at;
            bytes = size;
            if (got.size === m.n) process.send({ type: "opened", tag: m.tag, t0, firstAt: first, lastAt: last, bytes });
          }
          const e = expect;
          if (e && !e.seen.has(s) && cla().cluster_name === e.service && statusIn(cla(), e.id) === e.want) {
            e.seen.add(s);
            e.first ||= at;
            e.last = at;
            // Arrival (at) is when grpc-js handed the response over; decoded is after this
            // stream's ClusterLoadAssignment was decoded and read, as a client must.
            e.decodedLast = now();
            maybeDone();
          }
        }),
      );
    }
    groups.set(m.tag, streams);
  } else if (m.type === "expect") {
    const n = [...groups.values()].reduce((a, g) => a + g.filter((s) => s.watchesFlip).length, 0);
    expect = { k: m.k, service: m.service, id: m.id, status: m.status, want: m.want, seen: new Set(), first: 0, last: 0, decodedLast: 0, delta: 0, n: m.n ?? n };
  } else if (m.type === "close") {
    for (const s of groups.get(m.tag) ?? []) {
      s.call.cancel();
      s.client.close();
    }
    groups.delete(m.tag);
    process.send({ type: "closed", tag: m.tag });
  } else if (m.type === "report") {
    process.send({ type: "report", tag: m.tag, streams: (groups.get(m.tag) ?? []).map((s) => s.seen) });
  } else if (m.type === "exit") {
    for (const g of groups.values()) for (const s of g) s.client.close();
    void nc.close().then(() => process.exit(0));
  }
});
process.send({ type: "ready" });
