// Watches one service on the registry's HTTP API with blocking queries
// (`?index=N&wait=30s`, index from the X-Roster-Index header), so a change is seen the
// moment the registry answers, not at the next poll.
import { setTimeout as sleep } from "node:timers/promises";
import { getJson, instancesOf } from "./http.mjs";

export class ServiceWatch {
  constructor(httpUrl, service, { waitS = 30 } = {}) {
    this.url = `${httpUrl}/v1/services/${service}/instances`;
    this.waitS = waitS;
    this.index = 0;
    this.instances = [];
    this.waiters = new Set();
    this.closed = false;
    this.responses = 0;
    this.errors = 0;
    this.blocking = true;
    this.loop = this.run();
  }

  /** Status of the (first) instance of the service, or "absent". */
  get status() {
    return this.instances[0]?.status ?? "absent";
  }

  async run() {
    while (!this.closed) {
      try {
        const q = this.index > 0 ? `?status=any&index=${this.index}&wait=${this.waitS}s` : "?status=any";
        const r = await getJson(this.url + q, { timeoutMs: (this.waitS + 15) * 1000 });
        const at = performance.now();
        this.responses++;
        if (r.status === 200) {
          this.instances = instancesOf(r.body);
          if (r.index === undefined || Number.isNaN(r.index)) {
            // No index: fall back to polling every 20 ms (and say so in the report).
            this.blocking = false;
            await sleep(20);
          } else {
            // An index that went backwards (registry restart) restarts from scratch.
            this.index = r.index > 0 ? r.index : 0;
          }
        } else if (r.status === 404) {
          this.instances = [];
          await sleep(50);
        } else {
          this.errors++;
          await sleep(200);
        }
        for (const w of [...this.waiters]) {
          if (at >= w.after && w.pred(this)) {
            this.waiters.delete(w);
            w.resolve(at);
          }
        }
      } catch {
        if (this.closed) return;
        this.errors++;
        await sleep(200);
      }
    }
  }

  /**
   * Resolves with the time (performance.now()) of the first response at or after `after`
   * that satisfies `pred`; at once if the current state already does and `after` is 0.
   */
  until(pred, { after = 0, timeoutMs = 120_000, what = "condition" } = {}) {
    if (after === 0 && pred(this)) return Promise.resolve(performance.now());
    return new Promise((resolve, reject) => {
      const w = { pred, after, resolve: (t) => (clearTimeout(timer), resolve(t)) };
      const timer = setTimeout(() => {
        this.waiters.delete(w);
        reject(new Error(`${this.url}: timed out after ${timeoutMs}ms waiting for ${what} (status ${this.status})`));
      }, timeoutMs);
      this.waiters.add(w);
    });
  }

  close() {
    this.closed = true;
    for (const w of this.waiters) w.resolve(NaN);
    this.waiters.clear();
  }
}
