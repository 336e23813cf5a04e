// Every gateway of a process receives the same catalog delta, byte for byte, on its own NATS
// connection (a host may embed several; the fan-out benchmarks run 50 per process). Parsing and
// validating it once per process instead of once per gateway was most of a delta's cost per
// gateway (JSON.parse + zod ≈ 8 µs, plus the garbage). The same bytes give the same verdict, so
// the validation still happens at this boundary: a byte-for-byte equal message reuses the first
// one's result. The value is deep-frozen, since every gateway that got these bytes holds the same
// objects. A process with one gateway pays a copy of the bytes and the freeze per delta.
import type { z } from "zod";
import { decode, type Decoded } from "roster-schemas";

interface Entry {
  readonly bytes: Buffer;
  readonly result: Decoded<unknown>;
}

/** Recent messages decoded by any gateway of the process, newest first, keyed by their bytes. */
export class SharedDecoder<S extends z.ZodType> {
  private readonly entries: Entry[] = [];
  /** Answers served from the cache, and decodes done (for tests and benchmarks). */
  hits = 0;
  misses = 0;

  constructor(
    private readonly schema: S,
    /** Distinct messages kept: deltas of several services interleave, each arriving once per gateway. */
    private readonly size = 16,
  ) {}

  decode(data: Uint8Array): Decoded<z.infer<S>> {
    const entries = this.entries;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      if (e.bytes.byteLength === data.byteLength && e.bytes.equals(data)) {
        this.hits++;
        if (i > 0) {
          entries.splice(i, 1);
          entries.unshift(e);
        }
        return e.result as Decoded<z.infer<S>>;
      }
    }
    this.misses++;
    const result = decode(this.schema, data);
    if (result.ok) deepFreeze(result.value);
    entries.unshift({ bytes: Buffer.from(data), result: Object.freeze(result) });
    if (entries.length > this.size) entries.pop();
    return result;
  }
}

function deepFreeze(v: unknown): void {
  if (typeof v !== "object" || v === null || Object.isFrozen(v)) return;
  Object.freeze(v);
  for (const x of Object.values(v)) deepFreeze(x);
}
