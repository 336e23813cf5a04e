// The dashboard end to end, as a person sees it: a real nats-server, the registry and two host
// agents as processes (their bins), demo services, and headless Chromium (Debian's package,
// driven by playwright-core) on /ui/. Screenshots go to test-artifacts/ (gitignored).
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { ChildProc, NatsServer, freePort, spawnNode, waitFor } from "roster-testkit";
import { chromium, type Browser, type Page } from "playwright-core";

const root = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..", "..");
const AGENT = join(root, "agent", "bin", "roster-agent.js");
const REGISTRY = join(root, "registry", "bin", "roster-registry.js");
const DEMO = join(root, "examples", "demo-service.mjs");
const ARTIFACTS = join(root, "test-artifacts");
const CHROMIUM = process.env.ROSTER_CHROMIUM ?? "/usr/bin/chromium";
// A tag that would become an element if the page ever parsed catalog data as HTML.
const HOSTILE_TAG = "<b>bold</b>";

describe("dashboard (headless Chromium)", () => {
  let nats: NatsServer;
  let dir: string;
  let httpPort: number;
  let registry: ChildProc | undefined;
  const agents: ChildProc[] = [];
  const demos = new Map<string, ChildProc>();
  const ports: Record<string, number> = {};
  let browser: Browser | undefined;
  let page: Page;
  const base = () => `http://127.0.0.1:${httpPort}`;

  const startDemo = (id: string) => demos.set(id, spawnNode(DEMO, [String(ports[id]), id])).get(id)!;
  const check = "{ type: http, path: /health, interval: 200ms, timeout: 150ms, failuresBeforeCritical: 2 }";
  const svc = (name: string, id: string, tags: string[]) =>
    `  - { name: ${name}, id: ${id}, port: ${ports[id]}, address: 127.0.0.1, tags: ${JSON.stringify(tags)}, checks: [${check}] }`;

  async function agentConfig(host: string, zone: string, services: string[]): Promise<string> {
    const file = join(dir, `${host}.yaml`);
    await writeFile(file, [`host: { id: ${host}, zone: ${zone} }`, "heartbeat: { interval: 200ms }", "drain: { period: 200ms }", "services:", ...services, ""].join("\n"));
    return file;
  }

  const row = (id: string) => page.locator(`#instances tr[data-instance="${id}"]`);

  before(async () => {
    // Fails (does not skip) without a browser: .ci/run installs Debian's chromium.
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium (see .ci/run)`);
    nats = await NatsServer.start();
    dir = await mkdtemp(join(tmpdir(), "roster-ui-"));
    httpPort = await freePort();
    for (const id of ["orders-1", "orders-2", "payments-1"]) ports[id] = await freePort();
    for (const id of Object.keys(ports)) startDemo(id);
    const registryConfig = join(dir, "registry.json");
    await writeFile(registryConfig, JSON.stringify({ tickInterval: "50ms", presenceInterval: "200ms", selfPreservation: { threshold: 0.5, minHosts: 2 } }));
    registry = spawnNode(REGISTRY, ["--nats", nats.url, "--http", `127.0.0.1:${httpPort}`, "--config", registryConfig]);
    await waitFor(async () => (await fetch(`${base()}/readyz`).catch(() => null))?.status === 200, { timeoutMs: 15_000, what: "registry /readyz" });
    const a = await agentConfig("host-a", "eu-west-1a", [svc("orders", "orders-1", ["v2", "canary"]), svc("payments", "payments-1", ["pci"])]);
    const b = await agentConfig("host-b", "eu-west-1b", [svc("orders", "orders-2", ["v2", HOSTILE_TAG])]);
    for (const cfg of [a, b]) agents.push(spawnNode(AGENT, ["--config", cfg, "--nats", nats.url, "--api", "127.0.0.1:0"]));
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
    page.on("pageerror", (err) => assert.fail(`page error: ${err.message}`));
    await mkdir(ARTIFACTS, { recursive: true });
  });

  after(async () => {
    await browser?.close().catch(() => undefined);
    for (const p of [...agents, registry, ...demos.values()]) p?.kill("SIGKILL");
    await Promise.all([...agents, registry, ...demos.values()].map((p) => p?.exited));
    await nats?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("dashboard - lists services with counts and instances with status, zone, host, address and tags", async () => {
    await page.goto(`${base()}/ui/`);
    await page.locator('#live[data-state="live"]').waitFor({ timeout: 15_000 });
    for (const id of Object.keys(ports)) await page.locator(`#instances tr[data-instance="${id}"][data-status="passing"]`).waitFor({ timeout: 15_000 });
    const services = await page.locator("#services tbody tr").evaluateAll((rows) => rows.map((r) => [...r.querySelectorAll("td")].slice(0, 3).map((td) => td.textContent)));
    assert.deepEqual(services, [["orders", "2", "2"], ["payments", "1", "1"]]);
    const cells = await row("orders-2").locator("td").allTextContents();
    assert.deepEqual(cells.slice(0, 6), ["orders", "orders-2", "passing", "eu-west-1b", "host-b", `127.0.0.1:${ports["orders-2"]}`]);
    // Catalog strings are text, never markup.
    assert.equal(await row("orders-2").locator("span.tag", { hasText: HOSTILE_TAG }).count(), 1);
    assert.equal(await page.locator("#instances b").count(), 0);
    assert.equal(await page.locator("#n-instances").textContent(), "3");
    assert.equal(await page.locator("[data-banner]").count(), 0, "no banner while all is well");
  });

  it("dashboard - a health flip appears live, without a reload", async () => {
    const navigations: string[] = [];
    page.on("framenavigated", (f) => navigations.push(f.url()));
    demos.get("orders-1")!.kill("SIGKILL");
    await row("orders-1").and(page.locator('[data-status="critical"]')).waitFor({ timeout: 10_000 });
    await page.locator("#changes li", { hasText: "passing → critical" }).first().waitFor({ timeout: 5000 });
    assert.deepEqual(await page.locator('#services tbody tr[data-service="orders"] td').allTextContents().then((t) => t.slice(0, 3)), ["orders", "2", "1"]);
    assert.deepEqual(navigations, [], "no reload");
    const shot = join(ARTIFACTS, "dashboard.png");
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`dashboard screenshot: ${shot}`);
  });

  it("dashboard - the health timeline shows the flip, the sparkline counts changes, the instance page has each check's history and last output", async () => {
    // Timeline (last hour, from the registry's change history): orders-1 passing, then critical to
    // now. (An instance registers critical until its first check passes: that span comes first.)
    const lane = page.locator('#timeline [data-service="orders"] .lane[data-instance="orders-1"]');
    const spans = async (l: typeof lane) => l.locator("rect").evaluateAll((rs) => rs.map((r) => ({ status: r.getAttribute("data-status"), x: Number(r.getAttribute("x")), w: Number(r.getAttribute("width")) })));
    await waitFor(async () => (await spans(lane)).at(-1)?.status === "critical", { timeoutMs: 10_000, what: "orders-1's last span critical" });
    const segs = await spans(lane);
    const last = segs.at(-1)!;
    assert.ok(last.x + last.w >= 3598, `the critical span runs to now: ${JSON.stringify(segs)}`);
    assert.equal(segs.at(-2)?.status, "passing", `passing before the flip: ${JSON.stringify(segs)}`);
    for (let i = 1; i < segs.length; i++) assert.notEqual(segs[i]!.status, segs[i - 1]!.status, "adjacent spans of one status are merged");
    assert.equal((await spans(page.locator('#timeline .lane[data-instance="orders-2"]'))).at(-1)?.status, "passing", "orders-2 still passing");
    // Sparkline: the registrations and the flip were counted.
    const total = Number(await page.locator("#sparkline").getAttribute("data-total"));
    assert.ok(total >= 1, `sparkline total ${total}`);
    assert.ok((await page.locator("#sparkline rect").count()) >= 1);
    let shot = join(ARTIFACTS, "dashboard-timeline.png");
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`dashboard screenshot (timeline, sparkline): ${shot}`);
    // Instance page: from the instance's link in the table.
    await row("orders-1").locator("a[data-instance-link]").click();
    const ip = page.locator("#instance-page");
    await ip.waitFor({ state: "visible", timeout: 5000 });
    assert.equal(await page.locator("#ip-title").textContent(), "orders/orders-1");
    const check = page.locator('#ip-checks tr[data-check="http-0"]');
    await check.and(page.locator('[data-status="critical"]')).waitFor({ timeout: 10_000 });
    await check.locator('.hist li[data-status="critical"]').last().waitFor({ timeout: 10_000 });
    assert.deepEqual((await check.locator(".hist li").evaluateAll((ls) => ls.map((l) => l.getAttribute("data-status")))).slice(-2), ["passing", "critical"]);
    const output = (await check.locator("td.out").textContent()) ?? "";
    assert.ok(output.length > 1 && output !== "–", `last output: ${output}`);
    shot = join(ARTIFACTS, "dashboard-instance.png");
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`dashboard screenshot (instance page): ${shot}`);
    await page.evaluate('location.hash = ""');
    await ip.waitFor({ state: "hidden", timeout: 5000 });
  });

  it("dashboard - a registry cut off from NATS shows the stale banner, which clears on reconnect", async () => {
    await nats.stop();
    await page.locator('[data-banner="stale"]').first().waitFor({ timeout: 10_000 });
    assert.match((await page.locator("#banners").textContent()) ?? "", /not connected to NATS/);
    const shot = join(ARTIFACTS, "dashboard-stale.png");
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`dashboard screenshot (stale): ${shot}`);
    await nats.start();
    await page.locator("[data-banner]").first().waitFor({ state: "detached", timeout: 20_000 });
  });

  it("dashboard - both hosts going silent at once: the degraded banner, instances agent-lost but kept", async () => {
    for (const a of agents) a.kill("SIGKILL");
    await page.locator('[data-banner="degraded"]').waitFor({ timeout: 15_000 });
    assert.match((await page.locator("#banners").textContent()) ?? "", /self-preservation is on/);
    for (const id of Object.keys(ports)) await row(id).locator(".reason", { hasText: "agent-lost" }).waitFor({ timeout: 10_000 });
    assert.equal(await page.locator("#instances tbody tr").count(), 3, "nothing expired");
    const shot = join(ARTIFACTS, "dashboard-degraded.png");
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`dashboard screenshot (degraded): ${shot}`);
  });

  it("dashboard - a dropped event stream shows the banner; SIGTERM does not hang on open streams", async () => {
    const t0 = Date.now();
    const exit = await registry!.stop(10_000);
    assert.equal(exit.code, 0, registry!.output.slice(-2000));
    assert.ok(Date.now() - t0 < 8000, `registry took ${Date.now() - t0} ms to stop with a dashboard attached`);
    await page.locator('[data-banner="stale"]', { hasText: "Live updates interrupted" }).waitFor({ timeout: 10_000 });
  });
});
