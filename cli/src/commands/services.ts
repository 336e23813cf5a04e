import { request } from "../client.js";
import { jsonText, type Command } from "../context.js";
import { table } from "../core/table.js";
import { EXIT, UsageError } from "../errors.js";
import { ServiceList } from "../wire.js";

export const services: Command = {
  name: "services",
  server: "registry",
  synopsis: "list the services the registry knows, with instance counts",
  usage: `usage: roster services [--json]

Lists every service the registry knows (GET /v1/services): name, instances, passing instances.
A service whose instances are all gone is still listed, with 0.

  --json   the registry's answer as a JSON array on stdout
`,
  options: {},
  async run(ctx, args) {
    if (args.length > 0) throw new UsageError(`unexpected argument "${args[0]}"`, "services");
    const { body } = await request(ctx.registry, "v1/services", { schema: ServiceList });
    const list = [...body].sort((a, b) => a.name.localeCompare(b.name));
    if (ctx.json) ctx.out(jsonText(list));
    else ctx.out(table(["SERVICE", "INSTANCES", "PASSING"], list.map((s) => [s.name, String(s.instances), String(s.passing)])));
    return EXIT.ok;
  },
};
