// N xDS (ADS) streams spread over K load processes (bench/lib/xds-streams.mjs each). Real xDS
// clients decode in their own processes; one process holding all N streams handles their
// responses one after the other, so its own queue (grpc-js's receive path, decoding, ACKing)
// would be counted in the last stream's time. K = 1 gives that single-process figure.
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { forkHelper } from "./fork-helper.mjs";

const SCRIPT = fileURLToPath(new URL("./xds-streams.mjs", import.meta.url));
const now = () => performance.timeOrigin + performance.now();

/** Forks `procs` load processes; each subscribes the catalog deltas of `flipService` on `natsUrl`. */
export async function startXdsLoad({ natsUrl, flipService, procs = 4 }) {
  const helpers = [];
  for (let i = 0; i < Math.max(1, procs); i++) helpers.push(forkHelper(SCRIPT, [`--nats=${natsUrl}`, `--flip-service=${flipService}`], `xds-load-${i}`));
  await Promise.all(helpers.map((h) => h.next("ready", 60_000, { seen: true })));
  /** Streams per process for n in all (the first n % K processes hold one more). */
  const shares = (n) => helpers.map((_, i) => Math.floor(n / helpers.length) + (i < n % helpers.length ? 1 : 0));
  const shareOf = new Map(); // tag → shares
  const each = async (type, msgOf, timeoutMs, which = helpers.map((_, i) => i)) => {
    const waits = which.map((i) => helpers[i].next(type, timeoutMs));
    which.forEach((i) => helpers[i].send(msgOf(i)));
    return Promise.all(waits);
  };
  const holding = (tag) => (shareOf.get(tag) ?? []).flatMap((n, i) => (n > 0 ? [i] : []));
  return {
    procs: helpers.length,
    pids: () => helpers.map((h) => h.child.pid),
    /** Opens n streams on `names`; resolves when every stream holds minEndpoints endpoints. */
    async open({ tag, port, n, names, minEndpoints }, timeoutMs = 120_000) {
      const share = shares(n);
      shareOf.set(tag, share);
      const t0 = now();
      const got = await each("opened", (i) => ({ type: "open", tag, port, n: share[i], names, minEndpoints }), timeoutMs, holding(tag));
      return { t0, firstAt: Math.min(...got.map((g) => g.firstAt)), lastAt: Math.max(...got.map((g) => g.lastAt)), bytes: got[0].bytes };
    },
    /**
     * Resolves once every stream of `tag` has (service, id) at `want`: the first and last arrival
     * (the response's bytes handed over by grpc-js, before any decoding), the last stream's
     * decoded time (its ClusterLoadAssignment decoded and read), and the catalog delta's arrival
     * at the first load process's NATS subscriber. Call `arm` first, then make the change.
     */
    arm({ tag, k, service, id, status, want }, timeoutMs = 10_000) {
      const which = holding(tag);
      const share = shareOf.get(tag);
      return each("seen", (i) => ({ type: "expect", k, service, id, status, want, n: share[i] }), timeoutMs, which).then((seen) => ({
        xdsFirst: Math.min(...seen.map((s) => s.xdsFirst)),
        xdsLast: Math.max(...seen.map((s) => s.xdsLast)),
        decodedLast: Math.max(...seen.map((s) => s.decodedLast)),
        delta: seen[0].delta,
      }));
    },
    /** Every EDS response's [version, arrival] per stream of `tag` (all processes). */
    async report(tag) {
      const got = await each("report", () => ({ type: "report", tag }), 60_000);
      return got.flatMap((g) => g.streams);
    },
    async close(tag) {
      await each("closed", () => ({ type: "close", tag }), 10_000);
      shareOf.delete(tag);
    },
    async stop() {
      await Promise.all(
        helpers.map(async (h) => {
          h.send({ type: "exit" });
          await Promise.race([h.exited, sleep(5000)]);
          h.child.kill("SIGKILL");
        }),
      );
    },
  };
}
