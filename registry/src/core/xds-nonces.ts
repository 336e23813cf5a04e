/**
 * What a state-of-the-world and an incremental xDS stream share (pure): per resource type, the
 * response in flight and its nonce; the request counters. Nonces on a stream only rise, so each
 * one is unique on its stream; the adapter may hand the same nonce to many streams (one encoded
 * response written to every stream of a push), which the protocol allows: a nonce only has to
 * tell which of this stream's responses a request answers.
 */
import { kindOf, type XdsKind } from "./xds-resources.js";

export interface InFlight {
  /** Nonce of the last response sent; null before the first one. */
  nonce: string | null;
  inFlight: boolean;
}

export abstract class XdsStreamBase<S extends InFlight> {
  protected readonly kinds = new Map<XdsKind, S>();
  private lastNonce = 0;
  readonly counts = { requests: 0, acks: 0, nacks: 0, stale: 0, responses: 0 };

  /** Counts a request; its kind, or null for a type not served. */
  protected requested(typeUrl: string): XdsKind | null {
    this.counts.requests++;
    return kindOf(typeUrl) ?? null;
  }

  /** True when `nonce` may go out next on this stream (it is above every nonce sent on it). */
  acceptsNonce(nonce: number): boolean {
    return nonce > this.lastNonce;
  }

  /** A response of `kind` goes out with `nonce` (default: the next one of this stream). */
  protected markSent(kind: XdsKind, nonce?: number): { st: S; nonce: string } {
    const st = this.kinds.get(kind);
    if (!st) throw new Error(`no subscription for ${kind}`);
    const n = nonce ?? this.lastNonce + 1;
    if (!this.acceptsNonce(n)) throw new Error(`nonce ${n} is not above ${this.lastNonce}: it would not be unique on the stream`);
    this.lastNonce = n;
    st.nonce = String(n);
    st.inFlight = true;
    this.counts.responses++;
    return { st, nonce: st.nonce };
  }
}
