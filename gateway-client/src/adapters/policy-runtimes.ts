// The glue between the policy mirror and a request engine: one ServicePolicyRuntime per service,
// re-resolved (gateway options + service policy) whenever the service's policy changes. The engine
// asks `get(service)` per request; `inForce(service)` is what `gw.policy(service)` should show.
import type { Endpoint } from "../core/types.js";
import { resolvePolicy, type GatewayDefaults, type ResolvedPolicy } from "../core/policy/resolve.js";
import { ServicePolicyRuntime } from "../core/policy/runtime.js";
import type { PolicyMirror, PolicyView } from "./policy-mirror.js";

/** What `gw.policy(service)` shows: the options in force and where they come from. */
export interface PolicyInForce extends ResolvedPolicy {
  readonly service: string;
  /** True while the policy comes from the last-known-good file. */
  readonly fromLastKnownGood: boolean;
  /** False until the service's policy snapshot (or file copy) arrived: the gateway's options only. */
  readonly known: boolean;
}

export class PolicyRuntimes {
  private readonly runtimes = new Map<string, ServicePolicyRuntime>();
  private readonly onChange = (service: string, view: PolicyView | undefined) => {
    const rt = this.runtimes.get(service);
    if (rt) rt.update(resolvePolicy(this.defaults, view?.policy, view?.revision ?? 0));
    this.listener?.(service, rt);
  };

  constructor(
    private readonly policies: PolicyMirror,
    private readonly defaults: GatewayDefaults,
    private readonly random: () => number = Math.random,
    /** Called after a service's policy changed (the engine may rebuild balancers, emit an event). */
    private readonly listener?: (service: string, runtime: ServicePolicyRuntime | undefined) => void,
  ) {
    policies.on("change", this.onChange);
  }

  /** The service's runtime (created on first use from the policy known now; follows later changes). */
  get(service: string): ServicePolicyRuntime {
    let rt = this.runtimes.get(service);
    if (!rt) {
      this.policies.follow(service);
      const view = this.policies.view(service);
      rt = new ServicePolicyRuntime(resolvePolicy(this.defaults, view?.policy, view?.revision ?? 0), this.random);
      this.runtimes.set(service, rt);
    }
    return rt;
  }

  /** The service's instances changed: re-partitions them into the policy's subsets. */
  setEndpoints(service: string, endpoints: readonly Endpoint[]): void {
    this.get(service).setEndpoints(endpoints);
  }

  inForce(service: string): PolicyInForce {
    const view = this.policies.view(service);
    return { ...this.get(service).resolved, service, fromLastKnownGood: view?.fromLastKnownGood ?? false, known: view !== undefined };
  }

  close(): void {
    this.policies.off("change", this.onChange);
    this.runtimes.clear();
  }
}
