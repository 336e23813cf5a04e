// Deploy files cannot run here (no Docker engine): validate what can be validated.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, it } from "node:test";
import { parse } from "yaml";
import { assertNatsServerInstalled } from "@roster/testkit";

const root = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..");
const deploy = join(root, "deploy");

describe("deploy", () => {
  it("deploy - every nats-server config passes `nats-server -t`", () => {
    assertNatsServerInstalled();
    const confs = readdirSync(join(deploy, "nats")).filter((f) => f.endsWith(".conf"));
    assert.equal(confs.length, 3);
    for (const f of confs) {
      const r = spawnSync("nats-server", ["-t", "-c", join(deploy, "nats", f)], { encoding: "utf8" });
      assert.equal(r.status, 0, `${f}: ${r.stderr}${r.stdout}`);
    }
  });

  it("deploy - docker-compose.yml parses and every file it mounts or builds from exists", () => {
    const compose = parse(readFileSync(join(deploy, "docker-compose.yml"), "utf8"), { merge: true }) as {
      services: Record<string, { volumes?: string[]; build?: { context: string; dockerfile: string }; command?: string[] }>;
    };
    assert.deepEqual(Object.keys(compose.services).sort(), ["agent", "nats-1", "nats-2", "nats-3", "registry"]);
    for (const [name, svc] of Object.entries(compose.services)) {
      for (const v of svc.volumes ?? []) {
        const src = v.split(":")[0]!;
        if (src.startsWith(".")) assert.ok(existsSync(join(deploy, src)), `${name}: missing ${src}`);
      }
      if (svc.build) {
        assert.ok(existsSync(join(deploy, svc.build.context, svc.build.dockerfile)), `${name}: missing Dockerfile`);
      }
      const script = svc.command?.find((c) => c.endsWith(".js"));
      if (script) assert.ok(existsSync(join(root, script)), `${name}: missing ${script}`);
    }
  });

  it("deploy - the Dockerfile copies every workspace and the systemd units start existing binaries", () => {
    const dockerfile = readFileSync(join(deploy, "Dockerfile"), "utf8");
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { workspaces: string[] };
    for (const ws of pkg.workspaces) {
      const top = ws.split("/")[0]!;
      assert.match(dockerfile, new RegExp(`COPY ${top} ${top}`), `Dockerfile does not copy ${top}`);
    }
    for (const unit of readdirSync(join(deploy, "systemd"))) {
      const text = readFileSync(join(deploy, "systemd", unit), "utf8");
      const exec = /^ExecStart=\S+ \/opt\/roster\/(\S+)/m.exec(text);
      assert.ok(exec, `${unit}: no ExecStart`);
      assert.ok(existsSync(join(root, exec[1]!)), `${unit}: ${exec[1]} does not exist`);
      assert.match(text, /KillSignal=SIGTERM/);
    }
  });
});
