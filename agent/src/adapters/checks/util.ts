/** Short text for a failed probe: the error code when there is one ("ECONNREFUSED"), else the message. */
export function errorText(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown; cause?: unknown } | null;
  const cause = e?.cause as { code?: unknown; message?: unknown } | undefined;
  const code = typeof e?.code === "string" && e.code !== "UND_ERR_SOCKET" ? e.code : typeof cause?.code === "string" ? cause.code : undefined;
  const message = typeof e?.message === "string" ? e.message : String(err);
  if (code && message && !message.includes(code)) return `${code}: ${message}`.slice(0, 200);
  return (code && !message ? code : message).slice(0, 200);
}
