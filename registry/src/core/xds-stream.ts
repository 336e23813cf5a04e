/**
 * One ADS stream's state-of-the-world bookkeeping (pure, no I/O): what the client subscribed to
 * per resource type, which response is in flight (its version and nonce), what it ACKed, and what
 * changed since the last response. As in go-control-plane, catalog state, this per-stream state
 * and the gRPC transport live apart: the adapter asks `take()` what to send, builds it from the
 * catalog and reports it with `sent()`.
 *
 * Flow control: at most one response per type is in flight; changes meanwhile accumulate and go
 * out when the client ACKs or NACKs it (the client's request re-opens the "watch"). A NACK leaves
 * the client on its last good version, and nothing is re-sent until the catalog or the
 * subscription changes: sending the same thing again would only be rejected again.
 */
import { XDS_KINDS, type XdsKind } from "./xds-resources.js";
import { XdsStreamBase } from "./xds-nonces.js";

/** The fields of a DiscoveryRequest the state machine reads. */
export interface XdsRequest {
  typeUrl: string;
  versionInfo: string;
  responseNonce: string;
  resourceNames: readonly string[];
  /** error_detail.message, when the request is a NACK. */
  errorMessage?: string | undefined;
}

export type RequestOutcome =
  | { type: "unknown-type" }
  /** A nonce other than the last one sent: the client had not seen our latest response yet (ignored, per the protocol). */
  | { type: "stale" }
  /** First request for the type on this stream (or one without a nonce): the whole subscription is sent. */
  | { type: "subscribe"; kind: XdsKind }
  | { type: "ack"; kind: XdsKind; version: string }
  /** `rejected`: the version the client refused; `kept`: the last version it accepted (null: none yet). */
  | { type: "nack"; kind: XdsKind; rejected: string; kept: string | null; message: string };

interface KindState {
  /** Legacy wildcard (empty names on the first request) or an explicit "*" (clusters only). */
  wildcard: boolean;
  names: Set<string>;
  /** Nonce and version of the last response sent; null before the first one. */
  nonce: string | null;
  version: string | null;
  acked: string | null;
  inFlight: boolean;
  /** The next response carries the whole subscription (first response; listeners and clusters always). */
  full: boolean;
  /** Names whose resource changed since the last response (routes and endpoints send only these). */
  dirty: Set<string>;
}

/** Listeners and clusters: every state-of-the-world response lists all of them (absence = deleted). */
const FULL_STATE: ReadonlySet<XdsKind> = new Set(["listener", "cluster"]);

export class XdsStreamState extends XdsStreamBase<KindState> {
  request(req: XdsRequest): RequestOutcome {
    const kind = this.requested(req.typeUrl);
    if (!kind) return { type: "unknown-type" };
    let st = this.kinds.get(kind);
    if (!st || req.responseNonce === "" || st.nonce === null) {
      // A (re)subscription: on a new stream a client may carry the version it had before; the
      // catalog may have moved since, so it gets the whole current state.
      st ??= { wildcard: false, names: new Set(), nonce: null, version: null, acked: null, inFlight: false, full: true, dirty: new Set() };
      this.kinds.set(kind, st);
      this.subscribe(kind, st, req.resourceNames, true);
      st.full = true;
      st.inFlight = false;
      return { type: "subscribe", kind };
    }
    if (req.responseNonce !== st.nonce) {
      this.counts.stale++;
      return { type: "stale" };
    }
    st.inFlight = false;
    this.subscribe(kind, st, req.resourceNames, false);
    if (req.errorMessage !== undefined) {
      this.counts.nacks++;
      return { type: "nack", kind, rejected: st.version ?? "", kept: st.acked, message: req.errorMessage };
    }
    this.counts.acks++;
    st.acked = req.versionInfo;
    return { type: "ack", kind, version: req.versionInfo };
  }

  private subscribe(kind: XdsKind, st: KindState, names: readonly string[], first: boolean): void {
    const wildcard = names.includes("*") || (first && names.length === 0 && (kind === "listener" || kind === "cluster"));
    if (!first && names.length === 0 && st.wildcard) return; // legacy wildcard stays wildcard
    const next = new Set(names.filter((n) => n !== "*"));
    if (wildcard && !st.wildcard) st.full = true;
    st.wildcard = wildcard;
    for (const n of next) {
      if (!st.names.has(n)) {
        if (FULL_STATE.has(kind)) st.full = true;
        else st.dirty.add(n);
      }
    }
    st.names = next;
  }

  /**
   * The catalog changed: `services` had any change, `appeared` became known. Endpoints change
   * with any instance change; the other resources exist once the service is known and never
   * change after that.
   */
  changed(services: Iterable<string>, appeared: ReadonlySet<string>): void {
    const list = [...services];
    for (const [kind, st] of this.kinds) {
      if (kind === "cluster" && st.wildcard && appeared.size > 0) st.full = true;
      for (const s of kind === "endpoint" ? list : appeared) {
        if (!st.names.has(s)) continue;
        if (FULL_STATE.has(kind)) st.full = true;
        else st.dirty.add(s);
      }
    }
  }

  /** Kinds with something to send and no response in flight. */
  due(): XdsKind[] {
    const out: XdsKind[] = [];
    for (const k of XDS_KINDS) {
      const st = this.kinds.get(k);
      if (st && !st.inFlight && (st.full || st.dirty.size > 0)) out.push(k);
    }
    return out;
  }

  /**
   * What the next response of `kind` carries, clearing what was pending; null when nothing is due.
   * `wildcard` is true when every known resource is meant (the adapter lists them). An empty
   * `names` with `full` is still a response: for listeners and clusters it says "none of them exist".
   */
  take(kind: XdsKind): { names: string[]; wildcard: boolean; full: boolean } | null {
    const st = this.kinds.get(kind);
    if (!st || st.inFlight || (!st.full && st.dirty.size === 0)) return null;
    const names = st.full ? [...st.names] : [...st.dirty].filter((n) => st.names.has(n));
    const out = { names: names.sort(), wildcard: st.wildcard, full: st.full };
    st.full = false;
    st.dirty.clear();
    return out;
  }

  /** A response of `kind` at `version` goes out with `nonce` (see XdsStreamBase); returns the nonce. */
  sent(kind: XdsKind, version: string, nonce?: number): string {
    const out = this.markSent(kind, nonce);
    out.st.version = version;
    return out.nonce;
  }

  /** Per kind: subscribed names (or "*"), the version last sent and the one last ACKed. */
  status(): Partial<Record<XdsKind, { names: string[] | "*"; sent: string | null; acked: string | null; inFlight: boolean }>> {
    const out: ReturnType<XdsStreamState["status"]> = {};
    for (const [k, st] of this.kinds) out[k] = { names: st.wildcard ? "*" : [...st.names].sort(), sent: st.version, acked: st.acked, inFlight: st.inFlight };
    return out;
  }

  /** Names subscribed for `kind` (for the adapter's per-service index). */
  names(kind: XdsKind): ReadonlySet<string> {
    return this.kinds.get(kind)?.names ?? new Set();
  }
}
