/** Reads one request header by its lower-case name (the first value when repeated). */
export type HeaderLookup = (name: string) => string | undefined;

/** What request() and undici's dispatch() carry as headers. */
export type AnyHeaders =
  | Readonly<Record<string, string | readonly string[] | number | undefined | null>>
  | readonly string[]
  | Iterable<readonly [string, string]>
  | null
  | undefined;

/**
 * A lookup over a headers object (any case), a flat [name, value, ...] array (undici's raw form),
 * or an iterable of pairs (a WHATWG Headers). Built lazily: nothing is copied until asked.
 */
export function headerLookup(headers: AnyHeaders): HeaderLookup {
  if (!headers) return () => undefined;
  if (Array.isArray(headers)) {
    const flat = headers as readonly string[];
    return (name) => {
      for (let i = 0; i + 1 < flat.length; i += 2) if (String(flat[i]).toLowerCase() === name) return String(flat[i + 1]);
      return undefined;
    };
  }
  if (typeof (headers as Iterable<unknown>)[Symbol.iterator] === "function") {
    let map: Map<string, string> | null = null;
    return (name) => {
      if (!map) {
        map = new Map();
        for (const [k, v] of headers as Iterable<readonly [string, string]>) if (!map.has(k.toLowerCase())) map.set(k.toLowerCase(), String(v));
      }
      return map.get(name);
    };
  }
  const obj = headers as Readonly<Record<string, string | readonly string[] | number | undefined | null>>;
  return (name) => {
    let v = obj[name];
    if (v === undefined) {
      for (const k of Object.keys(obj)) if (k.toLowerCase() === name) {
        v = obj[k];
        break;
      }
    }
    if (v === undefined || v === null) return undefined;
    return Array.isArray(v) ? (v[0] === undefined ? undefined : String(v[0])) : String(v);
  };
}
