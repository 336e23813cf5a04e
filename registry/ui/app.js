// Roster dashboard: one EventSource on /v1/stream (snapshot, then put/delete deltas) plus a
// poll of /v1/status for the degraded/stale banners. Catalog strings only ever reach the page
// through textContent: nothing from the catalog is parsed as HTML.
"use strict";

const state = {
  services: new Map(), // name -> Map(id -> instance)
  revision: null,
  selected: null,
  changes: [], // newest first
  streamUp: false,
  status: null,
  statusError: null,
  policies: [], // GET /v1/policies: { service, revision, policy, split: [{ subset, configured, share, usable, ... }] }
};
const MAX_CHANGES = 100;
const $ = (id) => document.getElementById(id);

function el(tag, opts, ...children) {
  const e = document.createElement(tag);
  if (opts) {
    if (opts.cls) e.className = opts.cls;
    if (opts.text !== undefined) e.textContent = String(opts.text);
    if (opts.title) e.title = String(opts.title);
    if (opts.data) for (const [k, v] of Object.entries(opts.data)) e.dataset[k] = String(v);
  }
  for (const c of children) if (c) e.append(c);
  return e;
}

function statusBadge(inst) {
  const span = el("span", {}, el("span", { cls: `status s-${inst.status}`, text: inst.status }));
  if (inst.reason) span.append(el("span", { cls: "reason", text: inst.reason }));
  return span;
}

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  return `${Math.floor(s / 3600)}h ago`;
}

// ---------------------------------------------------------------- rendering

let pending = false;
function render() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    renderCounts();
    renderServices();
    renderInstances();
    renderChanges();
    renderPolicies();
    renderBanners();
  });
}

function allInstances() {
  const out = [];
  for (const m of state.services.values()) out.push(...m.values());
  return out;
}

function renderCounts() {
  const all = allInstances();
  const passing = all.filter((i) => i.status === "passing").length;
  $("n-services").textContent = String(state.services.size);
  $("n-instances").textContent = String(all.length);
  $("n-passing").textContent = String(passing);
  $("n-failing").textContent = String(all.length - passing);
  $("revision").textContent = state.revision === null ? "–" : String(state.revision);
  const s = state.status;
  $("n-hosts").textContent = s && typeof s.hosts === "number" ? String(s.hosts) : "–";
  $("n-lost").textContent = s && s.lostHosts ? `(${s.lostHosts} lost)` : "";
}

function renderServices() {
  const body = $("services").tBodies[0];
  const rows = [];
  for (const [name, m] of [...state.services.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    const list = [...m.values()];
    const passing = list.filter((i) => i.status === "passing").length;
    const bar = el("span", { cls: "bar", title: `${passing}/${list.length} passing` }, el("span"));
    bar.firstChild.style.width = list.length ? `${Math.round((100 * passing) / list.length)}%` : "0%";
    const tr = el(
      "tr",
      { cls: state.selected === name ? "sel" : "", data: { service: name } },
      el("td", { cls: "mono", text: name }),
      el("td", { cls: "r", text: list.length }),
      el("td", { cls: "r", text: passing }),
      el("td", {}, bar),
    );
    tr.addEventListener("click", () => {
      state.selected = state.selected === name ? null : name;
      render();
    });
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  $("services-empty").hidden = rows.length > 0;
}

function renderInstances() {
  const body = $("instances").tBodies[0];
  const sel = state.selected;
  $("filter-label").textContent = sel ? `of ${sel}` : "";
  $("clear-filter").hidden = !sel;
  const list = (sel ? [...(state.services.get(sel)?.values() ?? [])] : allInstances()).sort(
    (a, b) => a.service.localeCompare(b.service) || a.id.localeCompare(b.id),
  );
  const rows = list.map((i) =>
    el(
      "tr",
      { data: { service: i.service, instance: i.id, status: i.status } },
      el("td", { cls: "mono", text: i.service }),
      el("td", { cls: "mono", text: i.id }),
      el("td", {}, statusBadge(i)),
      el("td", { text: i.zone ?? "–" }),
      el("td", { cls: "mono", text: i.host }),
      el("td", { cls: "mono", text: `${i.address}:${i.port}` }),
      el("td", {}, ...i.tags.map((t) => el("span", { cls: "tag", text: t }))),
      el("td", { cls: "r dim", text: ago(i.updatedAt), title: new Date(i.updatedAt).toISOString() }),
    ),
  );
  body.replaceChildren(...rows);
  $("instances-empty").hidden = rows.length > 0;
}

function renderChanges() {
  const items = state.changes.map((c) =>
    el(
      "li",
      { cls: c.fresh ? "fresh" : "", data: { revision: c.revision } },
      el("span", { cls: "when mono", text: c.at.toLocaleTimeString([], { hour12: false }) }),
      el("span", { cls: `op op-${c.op}`, text: c.op }),
      el("span", { cls: "mono", text: `${c.service}/${c.id}` }),
      el("span", { text: c.text }),
      el("span", { cls: "dim mono", text: `rev ${c.revision}` }),
    ),
  );
  for (const c of state.changes) c.fresh = false;
  $("changes").replaceChildren(...items);
  $("changes-empty").hidden = items.length > 0;
}

const pct = (x) => `${Math.round(x * 1000) / 10}%`;

function describeSettings(p) {
  const out = [];
  if (p.affinity) out.push(`affinity: ${p.affinity.header ? `header ${p.affinity.header}` : `cookie ${p.affinity.cookie}`}`);
  if (p.balancer) out.push(`balancer: ${p.balancer}`);
  if (p.timeouts) out.push(`timeouts: ${[p.timeouts.try !== undefined && `try ${p.timeouts.try}`, p.timeouts.deadline !== undefined && `deadline ${p.timeouts.deadline}`].filter(Boolean).join(", ")}`);
  if (p.retries) out.push(`retries: ${p.retries.max}`);
  if (p.throttle) out.push(`throttle: ${p.throttle.adaptive ? `adaptive, k ${p.throttle.k ?? 2}` : "off"}`);
  if (p.rateLimit) out.push(`rate limit: ${p.rateLimit.perSecond}/s, burst ${p.rateLimit.burst ?? p.rateLimit.perSecond}`);
  if (p.fallback) out.push(`fallback: ${[p.fallback.stale && `stale ≤ ${p.fallback.stale.maxAge}`, p.fallback.status !== undefined && `static ${p.fallback.status}`].filter(Boolean).join(", then ")}`);
  return out;
}

function renderPolicies() {
  const rows = state.policies.map((a) => {
    const split = el("div", { cls: "split" });
    const moved = a.split.some((s) => s.weight > 0 && !s.usable);
    for (const s of a.split) {
      const bar = el("span", { cls: "sbar" }, el("span"));
      bar.firstChild.style.width = pct(s.share);
      split.append(
        el("span", { cls: `mono${s.usable ? "" : " down"}`, text: s.subset, title: `${s.usableInstances}/${s.instances} instances usable` }),
        bar,
        el("span", { cls: "mono", text: `${pct(s.configured)} → ${pct(s.share)}`, data: { subset: s.subset, share: pct(s.share) } }),
      );
    }
    const routes = (a.policy.routes ?? []).map((r) =>
      el("span", { cls: "setting mono", text: `${Object.entries(r.match.headers).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`).join(", ")} → ${r.subset}` }),
    );
    return el(
      "tr",
      { data: { service: a.service } },
      el("td", { cls: "mono", text: a.service }),
      el("td", { cls: "r mono", text: a.revision }),
      el("td", {}, a.split.length ? split : el("span", { cls: "dim", text: "no split" }), moved ? el("span", { cls: "moved", text: "share moved: a subset has no usable instance", data: { moved: "1" } }) : null),
      el("td", {}, ...routes),
      el("td", {}, ...describeSettings(a.policy).map((t) => el("span", { cls: "setting", text: t }))),
    );
  });
  $("policies").tBodies[0].replaceChildren(...rows);
  $("policies-empty").hidden = rows.length > 0;
}

function banner(kind, title, text) {
  return el("div", { cls: `banner banner-${kind}`, data: { banner: kind } }, el("strong", { text: title }), el("span", { text }));
}

function renderBanners() {
  const out = [];
  const s = state.status;
  const live = $("live");
  if (state.statusError) {
    out.push(banner("stale", "Stale:", `the registry does not answer (${state.statusError}); showing the last data received.`));
  } else if (s && s.natsConnected === false) {
    out.push(banner("stale", "Stale:", "the registry is not connected to NATS; the catalog shown is its last known state and health changes are not arriving."));
  }
  if (!state.streamUp) {
    out.push(banner("stale", "Live updates interrupted:", "reconnecting to the event stream; the data below may be out of date."));
  }
  if (s && (s.selfPreservation === true || s.degraded)) {
    const why = s.degraded && typeof s.degraded === "object" && typeof s.degraded.reason === "string" ? ` (${s.degraded.reason})` : "";
    out.push(
      banner(
        "degraded",
        "Degraded:",
        `self-preservation is on${why}: too many hosts went silent at once, so expiries are suspended and some instances may be gone.`,
      ),
    );
  }
  $("banners").replaceChildren(...out);
  const up = state.streamUp && !state.statusError && !(s && s.natsConnected === false);
  live.textContent = up ? "live" : state.streamUp ? "stale" : "reconnecting…";
  live.className = `pill ${up ? "pill-live" : state.streamUp ? "pill-down" : "pill-wait"}`;
  live.dataset.state = up ? "live" : "stale";
}

// ---------------------------------------------------------------- data

function describe(prev, next) {
  if (!next) return prev ? `removed (was ${prev.status})` : "removed";
  if (!prev) return `registered, ${next.status} at ${next.address}:${next.port}`;
  if (prev.status !== next.status) return `${prev.status} → ${next.status}${next.reason ? ` (${next.reason})` : ""}`;
  if (prev.reason !== next.reason) return next.reason ? `still ${next.status}, now ${next.reason}` : `${next.status}, ${prev.reason} cleared`;
  if (prev.address !== next.address || prev.port !== next.port) return `moved to ${next.address}:${next.port}`;
  return "updated";
}

function applyChange(op, d) {
  let m = state.services.get(d.service);
  if (!m) {
    m = new Map();
    state.services.set(d.service, m);
  }
  const prev = m.get(d.id);
  if (op === "put") m.set(d.id, d.instance);
  else m.delete(d.id);
  if (state.revision === null || d.revision > state.revision) state.revision = d.revision;
  state.changes.unshift({ op, service: d.service, id: d.id, revision: d.revision, text: describe(prev, op === "put" ? d.instance : null), at: new Date(), fresh: true });
  state.changes.length = Math.min(state.changes.length, MAX_CHANGES);
  // A changed instance may move a policy's split: ask again (coalesced).
  if (state.policies.some((p) => p.service === d.service)) schedulePolicies();
  render();
}

let source = null;
let lastId = null;
function connect() {
  // After a failed (non-200) answer EventSource gives up: reopen it ourselves, resuming.
  const url = lastId === null ? "/v1/stream" : `/v1/stream?lastEventId=${encodeURIComponent(lastId)}`;
  source = new EventSource(url);
  source.addEventListener("open", () => {
    state.streamUp = true;
    render();
  });
  source.addEventListener("error", () => {
    state.streamUp = false;
    render();
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, 2000);
  });
  source.addEventListener("snapshot", (e) => {
    lastId = e.lastEventId;
    const d = JSON.parse(e.data);
    state.services = new Map(d.services.map((s) => [s.name, new Map(s.instances.map((i) => [i.id, i]))]));
    state.revision = d.revision;
    render();
  });
  for (const op of ["put", "delete"]) {
    source.addEventListener(op, (e) => {
      lastId = e.lastEventId;
      applyChange(op, JSON.parse(e.data));
    });
  }
}

async function pollStatus() {
  try {
    const r = await fetch("/v1/status", { cache: "no-store" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    state.status = await r.json();
    state.statusError = null;
  } catch (err) {
    state.statusError = err instanceof Error ? err.message : String(err);
  }
  render();
}

let policiesTimer = null;
function schedulePolicies() {
  if (policiesTimer === null) policiesTimer = setTimeout(() => void pollPolicies(), 150);
}

async function pollPolicies() {
  if (policiesTimer !== null) clearTimeout(policiesTimer);
  policiesTimer = null;
  try {
    const r = await fetch("/v1/policies", { cache: "no-store" });
    // A registry without policies (older, or not ready yet) just shows none.
    if (r.ok) state.policies = await r.json();
  } catch {
    // the status poll already says the registry does not answer
  }
  render();
}

$("clear-filter").addEventListener("click", () => {
  state.selected = null;
  render();
});
connect();
void pollStatus();
setInterval(pollStatus, 2000);
void pollPolicies();
setInterval(pollPolicies, 2000);
// Keeps the "updated … ago" column honest.
setInterval(render, 10_000);
