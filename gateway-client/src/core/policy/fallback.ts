import type { Policy } from "roster-schemas";
import type { HeaderLookup } from "./headers.js";

export type PolicyFallback = NonNullable<Policy["fallback"]>;

/** Header set on every fallback answer, so a caller (and its logs) can tell one from the real thing. */
export const FALLBACK_HEADER = "x-roster-fallback";

export interface FallbackResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;
  /** `static` or `stale`. */
  readonly kind: "static" | "stale";
  /** For a stale answer: how old it is (ms). */
  readonly ageMs?: number;
}

const encoder = new TextEncoder();

/** The policy's static answer, or undefined when it has none (stale only). */
export function staticFallback(fallback: PolicyFallback | undefined): FallbackResponse | undefined {
  if (!fallback || fallback.status === undefined) return undefined;
  return {
    status: fallback.status,
    headers: { ...(fallback.headers ?? {}), [FALLBACK_HEADER]: "static" },
    body: encoder.encode(fallback.body ?? ""),
    kind: "static",
  };
}

export interface StaleCacheOptions {
  readonly maxAgeMs: number;
  readonly maxEntries: number;
  readonly maxBodyBytes: number;
}

interface Entry {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;
  readonly at: number;
}

/** Request headers that make an answer someone's own: part of the cache key, never shared across them. */
export const STALE_VARY: readonly string[] = ["authorization", "cookie"];
const MAX_KEY_LENGTH = 8192;

/**
 * The key of a GET for the stale cache: method, path (with query) and the values of `vary`
 * headers, so one user's answer is never served to another. Undefined when the request may not be
 * cached (not a GET, or a key too long to keep).
 */
export function staleKey(method: string, path: string, header: HeaderLookup, vary: readonly string[] = STALE_VARY): string | undefined {
  if (method.toUpperCase() !== "GET") return undefined;
  let key = `GET ${path}`;
  for (const h of vary) key += `\n${h}:${header(h) ?? ""}`;
  return key.length > MAX_KEY_LENGTH ? undefined : key;
}

/**
 * The last good answer of each GET (opt-in per policy: `fallback.stale`), served when nothing
 * can answer and it is at most `maxAgeMs` old. Bounded: `maxEntries` (least recently used go
 * first; a Map keeps insertion order) and `maxBodyBytes` per answer; answers marked
 * `Cache-Control: no-store` or `private` are never kept. Pure: `now` is passed in.
 */
export class StaleCache {
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;

  constructor(readonly options: StaleCacheOptions) {
    if (!(options.maxAgeMs > 0) || !(options.maxEntries >= 1) || !(options.maxBodyBytes >= 1)) throw new RangeError("stale cache: maxAgeMs > 0, maxEntries ≥ 1, maxBodyBytes ≥ 1");
  }

  get size(): number {
    return this.entries.size;
  }

  /** Bytes of bodies held. */
  get heldBytes(): number {
    return this.bytes;
  }

  /** Whether an answer may be kept (2xx, small enough, not no-store/private); check before buffering a body. */
  cacheable(status: number, headers: HeaderLookup, contentLength?: number): boolean {
    if (status < 200 || status > 299) return false;
    if (contentLength !== undefined && contentLength > this.options.maxBodyBytes) return false;
    const cc = headers("cache-control")?.toLowerCase() ?? "";
    return !/(^|[\s,])(no-store|private)([\s,=]|$)/.test(cc);
  }

  /** Keeps a good answer (the caller checked `cacheable`). Headers are copied; the body is kept as given. */
  put(key: string, status: number, headers: Readonly<Record<string, string>>, body: Uint8Array, now: number): boolean {
    if (body.byteLength > this.options.maxBodyBytes || status < 200 || status > 299) return false;
    const old = this.entries.get(key);
    if (old) {
      this.bytes -= old.body.byteLength;
      this.entries.delete(key);
    }
    this.entries.set(key, { status, headers: { ...headers }, body, at: now });
    this.bytes += body.byteLength;
    while (this.entries.size > this.options.maxEntries) {
      const [oldest, e] = this.entries.entries().next().value as [string, Entry];
      this.entries.delete(oldest);
      this.bytes -= e.body.byteLength;
    }
    return true;
  }

  /** The last good answer for `key` if at most maxAge old, marked as stale; else undefined (and too-old entries go). */
  get(key: string, now: number): FallbackResponse | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    const ageMs = now - e.at;
    if (ageMs > this.options.maxAgeMs) {
      this.entries.delete(key);
      this.bytes -= e.body.byteLength;
      return undefined;
    }
    // Recently used: move to the end.
    this.entries.delete(key);
    this.entries.set(key, e);
    return {
      status: e.status,
      headers: { ...e.headers, [FALLBACK_HEADER]: "stale", age: String(Math.max(0, Math.floor(ageMs / 1000))) },
      body: e.body,
      kind: "stale",
      ageMs,
    };
  }
}
