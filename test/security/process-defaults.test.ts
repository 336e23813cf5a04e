// Attack 9 of the "secure by default" issue ("defaults that expose"), replayed against the real
// registry and agent bins: a listener beyond loopback without auth and credentials on the command
// line must each produce one loud warning; the agent beyond loopback must not take anonymous
// writes; the registry's /docs page must carry a Content-Security-Policy that a real browser
// (Debian's Chromium through playwright-core) enforces without breaking the page. Beside each, the
// legitimate path: a loopback or authenticated registry logs no warning, and the docs still render.
// No nats-server is needed: both processes serve HTTP while NATS is unreachable.
import assert from "node:assert/strict";
import { existsSync, statSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { freePort, type ChildProc } from "roster-testkit";
import { chromium } from "playwright-core";
import { cleanEnv, killAll, raw, startAgent, startRegistry, tempDir } from "./agent-support.js";

const CHROMIUM = process.env.ROSTER_CHROMIUM ?? "/usr/bin/chromium";
const securityLines = (output: string) => output.split("\n").filter((l) => l.includes('"security":true'));

describe("security - defaults: warnings, anonymous writes, /docs CSP", () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let deadNats: string;
  const procs: ChildProc[] = [];

  before(async () => {
    ({ dir, cleanup } = await tempDir());
    deadNats = `nats://127.0.0.1:${await freePort()}`;
  });

  after(async () => {
    await killAll(...procs);
    await cleanup?.();
  });

  it("security - attack 9: a registry on 0.0.0.0 without auth logs one loud warning", async () => {
    const r = await startRegistry(["--nats", deadNats, "--http", "0.0.0.0:0"]);
    procs.push(r.proc);
    const lines = securityLines(r.proc.output);
    assert.equal(lines.length, 1, r.proc.output.slice(-2000));
    assert.match(lines[0]!, /"level":40/);
    assert.match(lines[0]!, /HTTP API listens on 0\.0\.0\.0, beyond loopback, WITHOUT authentication/);
  });

  it("security - attack 9: credentials on the command line (--nats user:pass@) give one warning, and never reach the log", async () => {
    const url = deadNats.replace("nats://", "nats://roster:hunter2-cmdline@");
    const r = await startRegistry(["--nats", url, "--http", "127.0.0.1:0"]);
    procs.push(r.proc);
    const a = await startAgent(dir, "host: { id: sec-cmdline }\n", ["--nats", url, "--api", "127.0.0.1:0"], cleanEnv({ HOME: dir }));
    procs.push(a.proc);
    for (const [who, output] of [["registry", r.proc.output], ["agent", a.proc.output]] as const) {
      const lines = securityLines(output);
      assert.equal(lines.length, 1, `${who}: ${output.slice(-2000)}`);
      assert.match(lines[0]!, /credentials were passed on the command line \(--nats\)/, who);
      assert.ok(!output.includes("hunter2-cmdline"), `${who} logged the password`);
    }
  });

  it("security - attack 9: an agent API on 0.0.0.0 takes no anonymous write (a token is generated into a 0600 file)", async () => {
    const tokenFile = join(dir, "run", "agent-token");
    const a = await startAgent(dir, "host: { id: sec-wide }\n", ["--nats", deadNats, "--api", "0.0.0.0:0"], cleanEnv({ HOME: dir, ROSTER_AGENT_TOKEN_FILE: tokenFile }), "wide.yaml");
    procs.push(a.proc);
    const put = await raw("PUT", `${a.api}/v1/agent/instances`, { body: { name: "anon", port: 5, address: "127.0.0.1" } });
    assert.equal(put.status, 401, put.text);
    assert.equal(put.json.code, "ROSTER_UNAUTHORIZED");
    assert.ok(existsSync(tokenFile));
    assert.equal(statSync(tokenFile).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, "run")).mode & 0o777, 0o700);
    assert.equal(securityLines(a.proc.output).length, 0, "authenticated: no warning");
  });

  it("security - legit: a registry on loopback, or beyond it with tokens, logs no security warning", async () => {
    const config = join(dir, "registry.json");
    await writeFile(config, JSON.stringify({ http: { auth: { tokens: [{ name: "ops", token: "write-token-0123456789abcdef", scopes: ["read", "write"] }] } } }));
    const loop = await startRegistry(["--nats", deadNats, "--http", "127.0.0.1:0"]);
    const authed = await startRegistry(["--nats", deadNats, "--http", "0.0.0.0:0", "--config", config]);
    procs.push(loop.proc, authed.proc);
    assert.deepEqual(securityLines(loop.proc.output), []);
    assert.deepEqual(securityLines(authed.proc.output), []);
  });

  it("security - attack 9: /docs has a Content-Security-Policy that Chromium enforces, and the docs still render", async () => {
    const r = await startRegistry(["--nats", deadNats, "--http", "127.0.0.1:0"]);
    procs.push(r.proc);
    for (const path of ["/docs", "/docs/", "/docs/static/swagger-initializer.js", "/docs/json"]) {
      const res = await raw("GET", `${r.url}${path}`);
      const csp = String(res.headers["content-security-policy"] ?? "");
      assert.match(csp, /script-src 'self'(;|$)/, `${path}: ${csp || "no CSP header"}`);
      assert.match(csp, /frame-ancestors 'none'/, path);
      assert.match(csp, /object-src 'none'/, path);
    }
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium (see .ci/run)`);
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"] });
    try {
      const page = await browser.newPage();
      const violations: string[] = [];
      await page.exposeFunction("reportViolation", (v: string) => violations.push(v));
      // (Browser code as strings: the tests compile without the DOM types.)
      await page.addInitScript({ content: "document.addEventListener('securitypolicyviolation', (e) => window.reportViolation(e.violatedDirective + ' ' + e.blockedURI))" });
      await page.goto(`${r.url}/docs`);
      await page.locator(".swagger-ui .info .title").waitFor({ timeout: 30_000 });
      assert.match(await page.locator(".swagger-ui .info .title").innerText(), /roster/i);
      assert.equal(violations.length, 0, `the docs page itself breaks its policy: ${violations.join(", ")}`);
      // What an injected inline script would do: blocked by the policy.
      const ran = await page.evaluate("(() => { const s = document.createElement('script'); s.textContent = 'window.__injected = true'; document.body.appendChild(s); return window.__injected === true; })()");
      assert.equal(ran, false, "an inline script ran on /docs");
      await page.waitForTimeout(200);
      assert.ok(violations.some((v) => v.startsWith("script-src")), violations.join(", "));
    } finally {
      await browser.close();
    }
  });
});
