import { connect } from "node:net";
import type { TcpCheckSpec } from "../../config.js";
import type { CheckResult } from "../../core/check.js";
import { guardedLookup } from "./guarded-lookup.js";
import { errorText } from "./util.js";

/** TCP check: a connection accepted within the timeout is passing, anything else critical. */
export function probeTcp(spec: Pick<TcpCheckSpec, "host" | "port" | "timeoutMs" | "guarded">, signal?: AbortSignal): Promise<CheckResult> {
  return new Promise((resolve) => {
    let done = false;
    const socket = connect({ host: spec.host, port: spec.port, ...(spec.guarded ? { lookup: guardedLookup } : {}) });
    const finish = (r: CheckResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onStop);
      socket.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish({ status: "critical", output: `timeout after ${spec.timeoutMs}ms` }), spec.timeoutMs);
    const onStop = () => finish({ status: "critical", output: "check stopped" });
    signal?.addEventListener("abort", onStop, { once: true });
    socket.once("connect", () => finish({ status: "passing", output: `TCP connect ${spec.host}:${spec.port}: success` }));
    socket.once("error", (err) => finish({ status: "critical", output: errorText(err) }));
  });
}
