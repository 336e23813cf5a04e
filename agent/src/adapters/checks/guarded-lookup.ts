import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from "node:dns";
import { isMetadataOrLinkLocal } from "roster-runtime";

type Callback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A `lookup` for net/tls connect (and undici's `connect` option) used by API-registered checks:
 * a name that resolves to a link-local or cloud-metadata address is refused at probe time, so a
 * host name registered through the API cannot reach 169.254.169.254 by DNS (the address itself is
 * refused at registration). IP literals never reach a lookup; they are checked when registered.
 */
export function guardedLookup(hostname: string, options: LookupOptions, callback: Callback): void {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, []);
    const bad = addresses.find((a) => isMetadataOrLinkLocal(a.address));
    if (bad) {
      const refused = Object.assign(new Error(`${hostname} resolves to ${bad.address}, a link-local or metadata address: refused for API-registered checks (api.checkTargets)`), { code: "ECHECKTARGET" });
      return callback(refused, []);
    }
    if (options.all) return callback(null, addresses);
    const first = addresses[0];
    if (!first) return callback(Object.assign(new Error(`${hostname}: no address`), { code: "ENOTFOUND" }), []);
    callback(null, first.address, first.family);
  });
}
