/** Protocol version carried in every message as `v`. Bumped only on an incompatible change. */
export const PROTOCOL_VERSION = 1 as const;

/**
 * Hard limits of the wire contract. A message over any of them is rejected whole
 * (and counted) rather than truncated, so a receiver never acts on half a record.
 */
export const LIMITS = {
  /** Largest encoded message on any roster subject (NATS' own default max_payload is 1 MiB). */
  maxMessageBytes: 256 * 1024,
  /** service, instance and host names: see NAME_PATTERN. */
  maxNameLength: 63,
  maxAddressLength: 253,
  maxTags: 32,
  maxTagLength: 64,
  maxMetaEntries: 64,
  maxMetaKeyLength: 128,
  maxMetaValueLength: 512,
  maxInstancesPerHost: 512,
  maxChecksPerInstance: 16,
  maxCheckOutputLength: 1024,
  minWeight: 1,
  maxWeight: 10_000,
} as const;

/**
 * Names that end up inside NATS subjects and KV keys (service, instance id, host id, zone).
 * Letters, digits, `_` and `-`, starting with a letter or digit: no `.`, `*`, `>` or
 * whitespace can ever reach a subject token.
 */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;
