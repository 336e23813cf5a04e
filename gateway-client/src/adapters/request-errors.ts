// Requests that ended in an error, by service and error code (the error path only). Kept apart
// from the metrics so a gateway without metrics never loads prom-client.

export interface RequestErrorSink {
  add(service: string, err: unknown): void;
}

export class RequestErrors implements RequestErrorSink {
  /** service → code → count. Capped so arbitrary unknown-service names cannot grow it forever. */
  readonly byService = new Map<string, Map<string, number>>();
  static readonly MAX_SERVICES = 1000;

  add(service: string, err: unknown): void {
    const code = typeof (err as { code?: unknown })?.code === "string" ? (err as { code: string }).code : "ERROR";
    let codes = this.byService.get(service);
    if (!codes) {
      if (this.byService.size >= RequestErrors.MAX_SERVICES) return;
      codes = new Map();
      this.byService.set(service, codes);
    }
    codes.set(code, (codes.get(code) ?? 0) + 1);
  }
}
