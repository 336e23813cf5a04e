// The dashboard's traffic-policy panel in headless Chromium (Debian's package, driven by
// playwright-core): a real nats-server, the registry process, a host speaking the real agent wire
// protocol, a policy set over HTTP. The split in force follows the instances live.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { HealthMessage, RegisterMessage, agentSubject, encode, type InstanceRegistration } from "roster-schemas";
import { ChildProc, NatsServer, freePort, spawnNode, waitFor } from "roster-testkit";
import { chromium, type Browser, type Page } from "playwright-core";

const root = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..");
const REGISTRY = join(root, "registry", "bin", "roster-registry.js");
const ARTIFACTS = join(root, "test-artifacts");
const CHROMIUM = process.env.ROSTER_CHROMIUM ?? "/usr/bin/chromium";
const HOSTILE = "<b>bold</b>";

const inst = (id: string, over: Partial<InstanceRegistration>): InstanceRegistration => ({
  id, service: "orders", address: "127.0.0.1", port: 9000, tags: [], meta: {}, weight: 100, status: "passing", checks: [], ...over,
});

describe("dashboard traffic policies (headless Chromium)", () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let registry: ChildProc | undefined;
  let browser: Browser | undefined;
  let page: Page;
  let base: string;
  let seq = 0;
  const env = () => ({ v: 1 as const, hostId: "host-p", epoch: 1, seq: ++seq, sentAt: Date.now() });
  const instances = [inst("orders-1", { tags: ["v1"], port: 9001 }), inst("orders-2", { tags: ["v1"], port: 9002 }), inst("orders-3", { meta: { version: "2.0.0" }, port: 9003 })];

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium (see .ci/run)`);
    nats = await NatsServer.start();
    nc = await connect({ servers: nats.url });
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    registry = spawnNode(REGISTRY, ["--nats", nats.url, "--http", `127.0.0.1:${port}`]);
    await registry.waitForOutput("registry ready", 15_000);
    nc.publish(agentSubject("host-p", "register"), encode(RegisterMessage, { ...env(), kind: "register", heartbeatIntervalMs: 60_000, instances }));
    await waitFor(async () => ((await (await fetch(`${base}/v1/services/orders/instances`)).json()) as unknown[]).length === 3, { what: "3 instances" });
    const policy = {
      subsets: { stable: { tags: ["v1"] }, canary: { meta: { version: "2.0.0" } } },
      split: [{ subset: "stable", weight: 95 }, { subset: "canary", weight: 5 }],
      routes: [{ match: { headers: { "x-canary": HOSTILE } }, subset: "canary" }],
      timeouts: { try: "500ms" },
      fallback: { status: 503, body: "later" },
    };
    const res = await fetch(`${base}/v1/services/orders/policy`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(policy) });
    assert.equal(res.status, 200, await res.text());
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"] });
    page = await browser.newPage({ viewport: { width: 1360, height: 1000 } });
    page.on("pageerror", (err) => assert.fail(`page error: ${err.message}`));
    await mkdir(ARTIFACTS, { recursive: true });
  });

  after(async () => {
    await browser?.close().catch(() => undefined);
    registry?.kill("SIGKILL");
    await registry?.exited;
    await nc?.close().catch(() => undefined);
    await nats?.close();
  });

  const share = (subset: string) => page.locator(`#policies tr[data-service="orders"] [data-subset="${subset}"]`);

  it("dashboard policy - shows each service's policy and the live split; a failing canary gives its share away", async () => {
    await page.goto(`${base}/ui/`);
    await share("stable").waitFor({ timeout: 15_000 });
    assert.equal(await share("stable").textContent(), "95% → 95%");
    assert.equal(await share("canary").textContent(), "5% → 5%");
    const row = page.locator('#policies tr[data-service="orders"]');
    assert.match((await row.textContent()) ?? "", /timeouts: try 500ms/);
    assert.match((await row.textContent()) ?? "", /fallback: static 503/);
    // Policy strings are text, never markup.
    assert.equal(await row.locator("span", { hasText: HOSTILE }).count(), 1);
    assert.equal(await page.locator("#policies b").count(), 0);

    nc.publish(
      agentSubject("host-p", "health"),
      encode(HealthMessage, { ...env(), kind: "health", service: "orders", instanceId: "orders-3", check: { id: "http-0", type: "http", status: "critical", since: Date.now() }, instanceStatus: "critical" }),
    );
    await page.locator('#policies [data-subset="canary"][data-share="0%"]').waitFor({ timeout: 10_000 });
    assert.equal(await share("stable").textContent(), "95% → 100%");
    await page.locator('#policies [data-moved="1"]').waitFor({ timeout: 5000 });
    const shot = join(ARTIFACTS, "dashboard-policy.png");
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`dashboard screenshot (policy): ${shot}`);

    await fetch(`${base}/v1/services/orders/policy`, { method: "DELETE" });
    await page.locator('#policies tr[data-service="orders"]').waitFor({ state: "detached", timeout: 10_000 });
    assert.equal(await page.locator("#policies-empty").isVisible(), true);
  });
});
