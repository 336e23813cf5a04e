// nginx as a child process of a benchmark: Debian's `nginx` package (installed when missing
// and we are root), a generated config in a temp dir, `-p <prefix> -c <conf> -g 'daemon off;'`,
// one worker (the machine is small and shared), an `upstream` block with keepalive.
import { spawnSync } from "node:child_process";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ChildProc, freePort, waitFor } from "roster-testkit";
import { progress } from "./log.mjs";

const CANDIDATES = ["/usr/sbin/nginx", "/usr/bin/nginx"];

function findNginx() {
  const r = spawnSync("sh", ["-c", "command -v nginx"], { encoding: "utf8" });
  const onPath = r.stdout?.trim();
  if (onPath) return onPath;
  return CANDIDATES.find((p) => spawnSync(p, ["-v"]).status === 0) ?? null;
}

/** The nginx binary; installs Debian's package first when it is missing and we are root. */
export function ensureNginx() {
  let bin = findNginx();
  if (bin) return bin;
  if (process.getuid?.() !== 0) throw new Error("nginx is not installed (apt-get install -y nginx, as root)");
  progress("nginx missing: apt-get update && apt-get install -y nginx");
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  for (const cmd of [["apt-get", ["update"]], ["apt-get", ["install", "-y", "nginx"]]]) {
    const r = spawnSync(cmd[0], cmd[1], { stdio: ["ignore", "ignore", "inherit"], env, timeout: 300_000 });
    if (r.status !== 0) throw new Error(`${cmd[0]} ${cmd[1].join(" ")} failed (${r.status ?? r.signal})`);
  }
  bin = findNginx();
  if (!bin) throw new Error("nginx still not found after apt-get install");
  return bin;
}

export function nginxVersion(bin) {
  const r = spawnSync(bin, ["-v"], { encoding: "utf8" });
  return (r.stderr || r.stdout || "").trim().replace(/^nginx version:\s*/, "");
}

/**
 * The reverse-proxy config. `passive` adds nginx's passive health checking and retries, as a
 * careful operator would set them: max_fails/fail_timeout per server, proxy_next_upstream on
 * error, timeout and 503 (GETs are idempotent), short connect and read timeouts.
 */
export function nginxConfig({ prefix, port, upstreams, keepalive = 64, passive = null }) {
  const server = (p) =>
    passive ? `    server 127.0.0.1:${p} max_fails=${passive.maxFails} fail_timeout=${passive.failTimeout};` : `    server 127.0.0.1:${p};`;
  const retry = passive
    ? `
      proxy_next_upstream error timeout http_503;
      proxy_next_upstream_tries ${passive.tries};
      proxy_connect_timeout ${passive.connectTimeout};
      proxy_read_timeout ${passive.readTimeout};
      proxy_send_timeout ${passive.readTimeout};`
    : "";
  return `worker_processes 1;
error_log ${join(prefix, "error.log")} warn;
pid ${join(prefix, "nginx.pid")};
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${join(prefix, "tmp", "body")};
  proxy_temp_path ${join(prefix, "tmp", "proxy")};
  fastcgi_temp_path ${join(prefix, "tmp", "fastcgi")};
  uwsgi_temp_path ${join(prefix, "tmp", "uwsgi")};
  scgi_temp_path ${join(prefix, "tmp", "scgi")};
  keepalive_requests 100000;
  keepalive_timeout 60s;
  upstream backend {
${upstreams.map(server).join("\n")}
    keepalive ${keepalive};
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";${retry}
    }
  }
}
`;
}

/**
 * Starts nginx in front of `upstreams` (ports on 127.0.0.1). Returns { url, pid, port, conf,
 * version, stop() }; stop() ends it (SIGTERM, then SIGKILL) and removes the temp dir.
 */
export async function startNginx({ upstreams, passive = null, keepalive = 64 }) {
  const bin = ensureNginx();
  const prefix = await mkdtemp(join(tmpdir(), "roster-bench-nginx-"));
  await mkdir(join(prefix, "tmp"), { recursive: true });
  const port = await freePort();
  const conf = nginxConfig({ prefix, port, upstreams, keepalive, passive });
  const file = join(prefix, "nginx.conf");
  await writeFile(file, conf);
  const child = new ChildProc(bin, ["-p", prefix, "-c", file, "-g", "daemon off;"]);
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(
      async () => {
        if (!child.alive) throw new Error(`nginx exited: ${child.output.slice(-2000)}`);
        try {
          const res = await fetch(`${url}/health`);
          await res.arrayBuffer();
          return true;
        } catch {
          return false;
        }
      },
      { timeoutMs: 10_000, intervalMs: 100, what: "nginx listening" },
    );
  } catch (err) {
    child.kill("SIGKILL");
    await rm(prefix, { recursive: true, force: true });
    throw err;
  }
  return {
    url,
    port,
    pid: child.pid,
    conf,
    version: nginxVersion(bin),
    async stop() {
      await child.stop(5000);
      await rm(prefix, { recursive: true, force: true });
    },
  };
}
