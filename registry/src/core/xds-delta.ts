/**
 * One incremental (delta) xDS stream's bookkeeping (pure): per resource type, the names the
 * client subscribed to, the version of each resource it holds, the response in flight and what
 * changed since. Unlike state of the world, a response carries only resources whose version
 * differs from what the client holds, and names of resources that went away.
 * Same flow control as `xds-stream.ts`: one response per type in flight.
 */
import { XDS_KINDS, type XdsKind } from "./xds-resources.js";
import { XdsStreamBase } from "./xds-nonces.js";

export interface XdsDeltaRequest {
  typeUrl: string;
  subscribe: readonly string[];
  unsubscribe: readonly string[];
  /** The versions the client already holds (first request of a type on a new stream). */
  initialVersions: Readonly<Record<string, string>>;
  responseNonce: string;
  errorMessage?: string | undefined;
}

export type DeltaOutcome =
  | { type: "unknown-type" }
  | { type: "subscribe"; kind: XdsKind }
  | { type: "stale"; kind: XdsKind }
  | { type: "ack"; kind: XdsKind }
  | { type: "nack"; kind: XdsKind; message: string };

interface KindState {
  wildcard: boolean;
  names: Set<string>;
  /** name → version the client holds (after our last response, or from initial_resource_versions). */
  held: Map<string, string>;
  nonce: string | null;
  inFlight: boolean;
  /** Names to look at in the next response. */
  dirty: Set<string>;
  /** Every known name is to be looked at (wildcard start, or a new service under a wildcard). */
  all: boolean;
}

export class XdsDeltaState extends XdsStreamBase<KindState> {
  request(req: XdsDeltaRequest): DeltaOutcome {
    const kind = this.requested(req.typeUrl);
    if (!kind) return { type: "unknown-type" };
    let st = this.kinds.get(kind);
    const first = !st;
    if (!st) {
      st = { wildcard: false, names: new Set(), held: new Map(), nonce: null, inFlight: false, dirty: new Set(), all: false };
      this.kinds.set(kind, st);
      for (const [n, v] of Object.entries(req.initialVersions)) st.held.set(n, v);
      // Legacy wildcard: a first request naming nothing (listeners and clusters only).
      if (req.subscribe.length === 0 && (kind === "listener" || kind === "cluster")) {
        st.wildcard = true;
        st.all = true;
      }
    }
    // Subscriptions apply whatever the nonce: they are not an answer to a response.
    for (const n of req.subscribe) {
      if (n === "*") {
        if (!st.wildcard) st.all = true;
        st.wildcard = true;
      } else if (!st.names.has(n)) {
        st.names.add(n);
        st.dirty.add(n);
      }
    }
    for (const n of req.unsubscribe) {
      if (n === "*") st.wildcard = false;
      st.names.delete(n);
      st.held.delete(n);
      st.dirty.delete(n);
    }
    if (first || req.responseNonce === "") return { type: "subscribe", kind };
    if (req.responseNonce !== st.nonce) {
      this.counts.stale++;
      return { type: "stale", kind };
    }
    st.inFlight = false;
    if (req.errorMessage !== undefined) {
      this.counts.nacks++;
      return { type: "nack", kind, message: req.errorMessage };
    }
    this.counts.acks++;
    return { type: "ack", kind };
  }

  /** Same meaning as XdsStreamState.changed. */
  changed(services: Iterable<string>, appeared: ReadonlySet<string>): void {
    const list = [...services];
    for (const [kind, st] of this.kinds) {
      if (st.wildcard && appeared.size > 0) for (const s of appeared) st.dirty.add(s);
      for (const s of kind === "endpoint" ? list : appeared) if (st.names.has(s)) st.dirty.add(s);
    }
  }

  due(): XdsKind[] {
    return XDS_KINDS.filter((k) => {
      const st = this.kinds.get(k);
      return st !== undefined && !st.inFlight && (st.all || st.dirty.size > 0);
    });
  }

  /**
   * The names to compare with the catalog for the next response of `kind` (null: nothing due);
   * `all` asks the adapter to add every known name (wildcard).
   */
  take(kind: XdsKind): { names: string[]; all: boolean; wildcard: boolean } | null {
    const st = this.kinds.get(kind);
    if (!st || st.inFlight || (!st.all && st.dirty.size === 0)) return null;
    const out = { names: [...st.dirty].sort(), all: st.all, wildcard: st.wildcard };
    st.dirty.clear();
    st.all = false;
    return out;
  }

  /** True when the client does not hold `name` at `version` (so it must be sent). */
  differs(kind: XdsKind, name: string, version: string | null): boolean {
    const held = this.kinds.get(kind)?.held.get(name);
    return version === null ? held !== undefined : held !== version;
  }

  /** A response goes out: `versions` of the resources sent, `removed` names, `nonce` as in XdsStreamBase; returns the nonce. */
  sent(kind: XdsKind, versions: ReadonlyMap<string, string>, removed: readonly string[], nonce?: number): string {
    const { st, nonce: sentNonce } = this.markSent(kind, nonce);
    for (const [n, v] of versions) st.held.set(n, v);
    for (const n of removed) st.held.delete(n);
    return sentNonce;
  }
}
