/**
 * MurmurHash3 x86 32-bit (Austin Appleby, public domain) over a string's UTF-16 code
 * units. Deterministic across processes and platforms, so every client of a service
 * builds the same hash ring.
 */
export function murmur3(key: string, seed = 0): number {
  let h = seed >>> 0;
  const len = key.length;
  let i = 0;
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  while (i + 4 <= len) {
    let k =
      (key.charCodeAt(i) & 0xffff) |
      ((key.charCodeAt(i + 1) & 0xffff) << 8) |
      ((key.charCodeAt(i + 2) & 0xffff) << 16) |
      ((key.charCodeAt(i + 3) & 0xffff) << 24);
    i += 4;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const rest = len - i;
  if (rest > 0) {
    let k = 0;
    if (rest >= 3) k ^= (key.charCodeAt(i + 2) & 0xffff) << 16;
    if (rest >= 2) k ^= (key.charCodeAt(i + 1) & 0xffff) << 8;
    k ^= key.charCodeAt(i) & 0xffff;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
  }
  h ^= len;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A key's hash as a number in [0, 1). */
export function hashUnit(key: string, seed = 0x5eed): number {
  return murmur3(key, seed) / 4294967296;
}
