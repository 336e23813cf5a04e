import { z } from "zod";
import { request } from "../client.js";
import { jsonText, type Command } from "../context.js";
import { EXIT, UsageError } from "../errors.js";

const HostReset = z.looseObject({ host: z.string(), reset: z.literal(true) });
const HOST = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;

export const host: Command = {
  name: "host",
  server: "registry",
  synopsis: "host reset <host>: clear a host's epoch/seq state in the registry (write token)",
  usage: `usage: roster host reset <host> [--json]

Asks the registry (POST /v1/hosts/<host>/reset) to forget the epoch and sequence number it holds
for <host> and to ask that host's agent for its full registration, which then replaces whatever
was registered in its name. For when a forged or corrupt message makes the registry refuse a real
agent (drops with reason stale-epoch, duplicate or out-of-order in /v1/status). Needs a token with
the write scope (--token / ROSTER_TOKEN) when the registry has http.auth; without it, the registry
accepts the call from loopback only. Exit 3 if the registry does not know the host.
`,
  options: {},
  async run(ctx, args) {
    if (args[0] !== "reset") throw new UsageError(args[0] === undefined ? 'missing subcommand "reset"' : `unknown subcommand "${args[0]}" (expected "reset")`, "host");
    const id = args[1];
    if (id === undefined) throw new UsageError("missing <host>", "host");
    if (!HOST.test(id)) throw new UsageError(`"${id}" is not a host id (letters, digits, '_' or '-')`, "host");
    if (args.length > 2) throw new UsageError(`unexpected argument "${args[2]}"`, "host");
    const { body } = await request(ctx.registry, `v1/hosts/${encodeURIComponent(id)}/reset`, { method: "POST", schema: HostReset });
    ctx.out(ctx.json ? jsonText(body) : `host ${body.host} reset: the registry asked its agent to resync`);
    return EXIT.ok;
  },
};
