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
    renderSparkline();
    renderTimeline();
    renderInstancePage();
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
      el("td", { cls: "mono" }, instanceLink(i.service, i.id)),
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


// ---------------------------------------------------------------- changes/s sparkline

const SVG = "http://www.w3.org/2000/svg";
const RATE_SECONDS = 120;
const rate = { counts: new Array(RATE_SECONDS).fill(0), second: Math.floor(Date.now() / 1000) };

function svgEl(tag, attrs, title) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (title) {
    const t = document.createElementNS(SVG, "title");
    t.textContent = title;
    e.append(t);
  }
  return e;
}

function rateAdvance() {
  const now = Math.floor(Date.now() / 1000);
  const steps = Math.min(RATE_SECONDS, now - rate.second);
  for (let i = 0; i < steps; i++) {
    rate.counts.shift();
    rate.counts.push(0);
  }
  if (steps > 0) rate.second = now;
}

function countChange() {
  rateAdvance();
  rate.counts[RATE_SECONDS - 1] += 1;
}

function renderSparkline() {
  rateAdvance();
  const peak = Math.max(...rate.counts);
  const scale = Math.max(1, peak);
  const bars = [svgEl("line", { x1: 0, x2: RATE_SECONDS, y1: 31.5, y2: 31.5 })];
  rate.counts.forEach((n, i) => {
    if (n === 0) return;
    const h = Math.max(2, Math.round((30 * n) / scale));
    bars.push(svgEl("rect", { x: i, y: 32 - h, width: 0.8, height: h }, `${n} change${n === 1 ? "" : "s"} ${RATE_SECONDS - i} s ago`));
  });
  const svg = $("sparkline");
  svg.replaceChildren(...bars);
  svg.dataset.total = String(rate.counts.reduce((a, b) => a + b, 0));
  svg.dataset.peak = String(peak);
  $("rate-now").textContent = String(rate.counts[RATE_SECONDS - 2] ?? 0);
  $("rate-peak").textContent = String(peak);
}

// ---------------------------------------------------------------- health timeline (last hour)

const HOUR = 3_600_000;
const TIMELINE_MAX_SERVICES = 8;
const history = new Map(); // service -> { data, timer }

function timelineServices() {
  if (state.selected) return [state.selected];
  return [...state.services.keys()].sort((a, b) => a.localeCompare(b)).slice(0, TIMELINE_MAX_SERVICES);
}

async function loadHistory(name) {
  try {
    const r = await fetch(`/v1/services/${encodeURIComponent(name)}/history?window=1h`, { cache: "no-store" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const entry = history.get(name) ?? {};
    entry.data = await r.json();
    history.set(name, entry);
  } catch {
    // The banners already say when the registry does not answer; the timeline keeps what it had.
  }
  render();
}

/** Coalesces a burst of changes into one fetch per service. */
function scheduleHistory(name) {
  const entry = history.get(name) ?? {};
  history.set(name, entry);
  if (entry.timer) return;
  entry.timer = setTimeout(() => {
    entry.timer = null;
    void loadHistory(name);
  }, 300);
}

/** [from, to, state, title] spans of one instance over the window. */
function segmentsOf(h, id, now) {
  const changes = h.changes.filter((c) => c.id === id);
  const from = now - HOUR;
  const current = state.services.get(h.service)?.get(id);
  let st = changes.length ? "unknown" : current ? (h.complete ? current.status : "unknown") : "gone";
  let t = from;
  const out = [];
  const push = (a, b, s) => {
    const prev = out[out.length - 1];
    if (prev && prev[2] === s) prev[1] = b; // a change that kept the status (new output, reason) is one span
    else out.push([a, b, s]);
  };
  for (const c of changes) {
    if (c.at > t) push(t, c.at, st);
    st = c.op === "put" ? c.status : "gone";
    t = Math.max(t, c.at);
  }
  if (now > t) push(t, now, st);
  return out;
}

function renderTimeline() {
  const now = Date.now();
  const blocks = [];
  for (const name of timelineServices()) {
    const h = history.get(name)?.data;
    if (!h) {
      if (!history.has(name)) scheduleHistory(name);
      continue;
    }
    const ids = new Set([...h.changes.map((c) => c.id), ...(state.services.get(name)?.keys() ?? [])]);
    if (h.changes.length === 0) continue;
    const lanes = [...ids].sort().map((id) => {
      const bar = svgEl("svg", { viewBox: `0 0 ${HOUR / 1000} 1`, preserveAspectRatio: "none" });
      for (const [a, b, st] of segmentsOf(h, id, now)) {
        const title = `${st} ${new Date(a).toLocaleTimeString([], { hour12: false })}–${new Date(b).toLocaleTimeString([], { hour12: false })}`;
        bar.append(svgEl("rect", { x: (a - (now - HOUR)) / 1000, width: Math.max(2, (b - a) / 1000), y: 0, height: 1, class: `seg-${st}`, "data-status": st }, title));
      }
      const label = state.services.get(name)?.has(id) ? instanceLink(name, id) : el("span", { cls: "lane-id mono", text: id });
      return el("div", { cls: "lane", data: { instance: id } }, label, bar);
    });
    const axis = el("div", { cls: "axis" }, el("div"), el("div", {}, el("span", { text: "-60 min" }), el("span", { text: "-30 min" }), el("span", { text: "now" })));
    blocks.push(el("div", { cls: "timeline-service", data: { service: name } }, el("h3", { cls: "mono", text: name }), ...lanes, axis));
  }
  $("timeline").replaceChildren(...blocks);
  $("timeline-empty").hidden = blocks.length > 0;
  $("timeline-of").textContent = state.selected ? `, ${state.selected}` : "";
}

// ---------------------------------------------------------------- instance page (#/instance/<service>/<id>)

function instanceLink(service, id) {
  return el("a", { cls: "mono", text: id, data: { instanceLink: `${service}/${id}` } }, null);
}

function route() {
  const m = /^#\/instance\/([^/]+)\/([^/]+)$/.exec(location.hash);
  return m ? { service: decodeURIComponent(m[1]), id: decodeURIComponent(m[2]) } : null;
}

function checkHistory(h, id, checkId) {
  const out = [];
  let last = null;
  for (const c of h.changes) {
    if (c.id !== id) continue;
    const ck = c.op === "put" ? (c.checks ?? []).find((x) => x.id === checkId) : null;
    const st = ck ? ck.status : c.op === "delete" ? "deregistered" : null;
    if (st === null || st === last) continue;
    last = st;
    out.push({ at: c.at, status: st, output: ck?.output });
  }
  return out;
}

function renderInstancePage() {
  const r = route();
  const page = $("instance-page");
  page.hidden = !r;
  if (!r) return;
  const inst = state.services.get(r.service)?.get(r.id);
  const h = history.get(r.service)?.data;
  if (!history.has(r.service)) scheduleHistory(r.service);
  $("ip-title").textContent = `${r.service}/${r.id}`;
  page.dataset.instance = r.id;
  page.dataset.status = inst ? inst.status : "gone";
  $("ip-summary").replaceChildren(
    inst
      ? el("p", {}, statusBadge(inst), el("span", { cls: "mono", text: `  ${inst.address}:${inst.port}  host ${inst.host}${inst.zone ? `  zone ${inst.zone}` : ""}  ` }), ...inst.tags.map((t) => el("span", { cls: "tag", text: t })))
      : el("p", { cls: "dim", text: "Not in the catalog (deregistered, expired or never registered)." }),
  );
  const checks = inst ? inst.checks : [];
  const rows = checks.map((c) => {
    const hist = h ? checkHistory(h, r.id, c.id) : [];
    const list = el(
      "ol",
      { cls: "hist" },
      ...hist.map((e) =>
        el("li", { data: { status: e.status } }, el("span", { cls: "when mono", text: new Date(e.at).toLocaleTimeString([], { hour12: false }) }), el("span", { cls: `status s-${e.status}`, text: e.status }), e.output ? el("span", { cls: "out", text: ` ${e.output}` }) : null),
      ),
    );
    return el(
      "tr",
      { data: { check: c.id, status: c.status } },
      el("td", { cls: "mono", text: c.id }),
      el("td", { text: c.type }),
      el("td", {}, el("span", { cls: `status s-${c.status}`, text: c.status })),
      el("td", { cls: "dim", text: ago(c.since), title: new Date(c.since).toISOString() }),
      el("td", { cls: "out", text: c.output ?? "–" }),
      el("td", {}, hist.length ? list : el("span", { cls: "dim", text: h ? "no change held in the last hour" : "loading…" })),
    );
  });
  $("ip-checks").tBodies[0].replaceChildren(...rows);
  $("ip-no-checks").hidden = !inst || rows.length > 0;
  $("ip-note").textContent = h && !h.complete ? "The registry holds a bounded history per service (streams.ringSize): older transitions are not shown." : "";
}

document.addEventListener("click", (e) => {
  const a = e.target instanceof Element ? e.target.closest("a[data-instance-link]") : null;
  if (!a) return;
  e.preventDefault();
  location.hash = `#/instance/${a.dataset.instanceLink.split("/").map(encodeURIComponent).join("/")}`;
});
window.addEventListener("hashchange", () => {
  render();
  if (route()) $("instance-page").scrollIntoView({ block: "start" });
});

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
  countChange();
  if (timelineServices().includes(d.service) || route()?.service === d.service) scheduleHistory(d.service);
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
    for (const name of timelineServices()) scheduleHistory(name);
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
// Keeps the "updated … ago" column and the timeline's window honest; the sparkline moves each second.
setInterval(render, 10_000);
setInterval(renderSparkline, 1000);
setInterval(() => {
  for (const name of timelineServices()) scheduleHistory(name);
}, 30_000);
