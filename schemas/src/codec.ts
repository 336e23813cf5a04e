import { z } from "zod";
import { ValidationError } from "./errors.js";
import { formatIssues } from "./format.js";
import { LIMITS } from "./limits.js";

export type DropReason = "too-large" | "not-json" | "invalid";

export type Decoded<T> =
  | { ok: true; value: T }
  | { ok: false; reason: DropReason; error: string };

const decoder = new TextDecoder("utf-8", { fatal: false });

const compiled = new WeakMap<z.ZodType, z.ZodType>();

/**
 * The schema's AOT-compiled clone (`z.compile`, made once per schema and kept): a valid value takes
 * generated code, an invalid one falls back to the schema's own parser, so what is accepted, the
 * output and every error message (with its field path) are the schema's. Why: a registration
 * carries up to 1,000 instances and the registry reads tens of thousands a second in a storm; the
 * interpreted parse cost ~4.6 µs per instance (an object and an issues array per field), the
 * compiled one ~0.6 µs (docs/BENCHMARKS.md, storm). A schema zod cannot compile (async refinements,
 * a few constructs) comes back unchanged and is parsed as before.
 */
function compiledOf<S extends z.ZodType>(schema: S): S {
  let c = compiled.get(schema);
  if (c === undefined) {
    // package.json accepts zod ^4.1.5; a zod without `compile` parses as before.
    c = typeof z.compile === "function" ? z.compile(schema) : schema;
    compiled.set(schema, c);
  }
  return c as S;
}

/**
 * Decodes bytes from the wire. Never throws: oversized, non-JSON and invalid payloads come
 * back as `{ ok: false, reason }` so the caller can drop and count them.
 */
export function decode<S extends z.ZodType>(schema: S, data: Uint8Array | string, maxBytes: number = LIMITS.maxMessageBytes): Decoded<z.infer<S>> {
  const size = typeof data === "string" ? Buffer.byteLength(data) : data.byteLength;
  if (size > maxBytes) return { ok: false, reason: "too-large", error: `${size} bytes > limit ${maxBytes}` };
  let json: unknown;
  try {
    json = JSON.parse(typeof data === "string" ? data : decoder.decode(data));
  } catch (err) {
    return { ok: false, reason: "not-json", error: (err as Error).message };
  }
  const parsed = compiledOf(schema).safeParse(json);
  if (!parsed.success) return { ok: false, reason: "invalid", error: formatIssues(parsed.error).join("; ") };
  return { ok: true, value: parsed.data };
}

/** Like `decode` but throws a `ValidationError` (code ROSTER_INVALID). */
export function decodeOrThrow<S extends z.ZodType>(schema: S, data: Uint8Array | string, what = "message"): z.infer<S> {
  const r = decode(schema, data);
  if (!r.ok) throw new ValidationError(what, [r.error]);
  return r.value;
}

/**
 * Validates then encodes, so a bug on the sending side fails loudly at the sender instead
 * of being dropped by every receiver.
 */
export function encode<S extends z.ZodType>(schema: S, value: z.input<S>, what = "message"): Uint8Array {
  const parsed = compiledOf(schema).safeParse(value);
  if (!parsed.success) throw new ValidationError(what, formatIssues(parsed.error));
  return utf8Within(JSON.stringify(parsed.data), what);
}

/**
 * Throws ROSTER_INVALID when `byteLength` encoded bytes are over the message size limit. Also for
 * bytes built from input already validated against its schema (the registry's catalog records,
 * written at tens of thousands a second in a registration storm: `catalogInstanceJson`), which skip
 * a second validation but not the limit; each such builder has a property test showing that what
 * it makes passes the schema (registry: test/unit/catalog-properties.test.ts).
 */
export function checkEncodedSize(byteLength: number, what: string): void {
  if (byteLength > LIMITS.maxMessageBytes) {
    throw new ValidationError(what, [`encoded size ${byteLength} > limit ${LIMITS.maxMessageBytes}`]);
  }
}

/**
 * UTF-8 bytes of `json`, within the message size limit. Buffer.from, not TextEncoder: about half
 * the cost on Node 20 for a catalog record (~0.6 vs ~1.1 µs), and small buffers come from Node's
 * pool. A Buffer is a Uint8Array.
 */
function utf8Within(json: string, what: string): Uint8Array {
  const bytes = Buffer.from(json, "utf8");
  checkEncodedSize(bytes.byteLength, what);
  return bytes;
}
