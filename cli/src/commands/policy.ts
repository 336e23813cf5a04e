import { request } from "../client.js";
import { jsonText, type Command } from "../context.js";
import { table } from "../core/table.js";
import { EXIT, UsageError } from "../errors.js";
import { PolicyAnswer, PolicyRemoved } from "../wire.js";
import { readDefinition } from "./agent.js";

const pct = (x: number) => `${(Math.round(x * 1000) / 10).toFixed(1)}%`;

function revisionOf(value: string | boolean | string[] | boolean[] | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || !/^\d{1,15}$/.test(value)) throw new UsageError("--if-match: expected a revision (a number)", "policy");
  return Number(value);
}

export const policy: Command = {
  name: "policy",
  server: "registry",
  synopsis: "get, set or delete a service's traffic policy",
  usage: `usage: roster policy get <service> [--json]
       roster policy set <service> --file <policy.yaml|json> [--if-match <revision>] [--json]
       roster policy delete <service> [--if-match <revision>] [--json]

A service's traffic policy (docs/traffic-policy.md): subsets, split, routes, affinity, timeouts,
retries, balancer, throttle, rate limit, fallback. It reaches every gateway client in milliseconds.

  get      prints the policy as YAML (set --file takes it back as is), the split in force as
           comments below it (GET /v1/services/<service>/policy); exit 3 when none is set
  set      replaces the policy with the file's (PUT, write scope); a bad field is named
  delete   removes it: gateways go back to their own options (DELETE, write scope)

  --file <path>          the policy, JSON or YAML
  --if-match <revision>  only if the policy is still at this revision (0: only if none is set)
  --json                 the registry's answer as JSON on stdout
`,
  options: { file: { type: "string" }, "if-match": { type: "string" } },
  async run(ctx, args, values) {
    const [action, service, extra] = args;
    if (action === undefined) throw new UsageError("missing get, set or delete", "policy");
    if (service === undefined) throw new UsageError("missing <service>", "policy");
    if (extra !== undefined) throw new UsageError(`unexpected argument "${extra}"`, "policy");
    const path = `v1/services/${encodeURIComponent(service)}/policy`;
    const ifMatch = revisionOf(values["if-match"]);
    const target = ctx.registry;
    switch (action) {
      case "get": {
        if (values.file !== undefined || ifMatch !== undefined) throw new UsageError("get takes no --file or --if-match", "policy");
        const { body } = await request(target, path, { schema: PolicyAnswer });
        if (ctx.json) {
          ctx.out(jsonText(body));
          return EXIT.ok;
        }
        const { stringify } = await import("yaml");
        let text = `# policy of ${body.service}, revision ${body.revision}\n${stringify(body.policy)}`;
        if (body.split.length > 0) {
          const rows = body.split.map((s) => [s.subset, String(s.weight), pct(s.configured), pct(s.share), `${s.usableInstances ?? "?"}/${s.instances ?? "?"}`]);
          text += table(["SUBSET", "WEIGHT", "CONFIGURED", "IN FORCE", "USABLE"], rows).replace(/^/gm, "# ");
        }
        ctx.out(text.endsWith("\n") ? text : `${text}\n`);
        return EXIT.ok;
      }
      case "set": {
        if (typeof values.file !== "string") throw new UsageError("set needs --file <policy.yaml|json>", "policy");
        const doc = await readDefinition(values.file, "one policy (a mapping: subsets, split, routes, ...)", "see docs/traffic-policy.md");
        const { body } = await request(target, path, { method: "PUT", body: doc, schema: PolicyAnswer, ...(ifMatch !== undefined ? { headers: { "if-match": `"${ifMatch}"` } } : {}) });
        if (ctx.json) ctx.out(jsonText(body));
        else ctx.out(`policy of ${body.service} set: revision ${body.revision}\n`);
        return EXIT.ok;
      }
      case "delete": {
        if (values.file !== undefined) throw new UsageError("delete takes no --file", "policy");
        const { body } = await request(target, path, { method: "DELETE", schema: PolicyRemoved, ...(ifMatch !== undefined ? { headers: { "if-match": `"${ifMatch}"` } } : {}) });
        if (ctx.json) ctx.out(jsonText(body));
        else ctx.out(`policy of ${body.service} deleted: revision ${body.revision}\n`);
        return EXIT.ok;
      }
      default:
        throw new UsageError(`unknown action "${action}": expected get, set or delete`, "policy");
    }
  },
};
