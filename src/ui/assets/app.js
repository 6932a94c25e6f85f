// llm-router dashboard. Plain DOM, no dependencies. Every string from the
// server is inserted with textContent, never as HTML.
"use strict";

const $ = (sel, el = document) => el.querySelector(sel);
let csrf = null;
let previous = null; // last state, for rates
let timer = null;

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "checked" || k === "value") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function api(path, options = {}) {
  const headers = { "content-type": "application/json" };
  if (csrf) headers["x-csrf-token"] = csrf;
  const res = await fetch(path, { credentials: "same-origin", ...options, headers });
  let body = null;
  try { body = await res.json(); } catch (_) { /* empty */ }
  if (!res.ok) {
    const message = body && body.error ? body.error.message : `HTTP ${res.status}`;
    const err = new Error(message);
    err.status = res.status;
    throw err;
  }
  return body;
}

function toast(message, bad = false) {
  const t = $("#toast");
  t.textContent = message;
  t.className = "toast" + (bad ? " bad" : "");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.add("hidden"), 4000);
}

async function edit(change) {
  try {
    const r = await api("/ui/api/edit", { method: "POST", body: JSON.stringify(change) });
    toast(r.changes && r.changes.length ? r.changes.join("; ") : "Saved");
    await refresh();
  } catch (e) {
    toast(e.message, true);
  }
}

// ------------------------------------------------------------- formatting

const fmt = {
  int: (n) => (n ?? 0).toLocaleString("en-US"),
  rate: (n) => (n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2)),
  ms: (v) => (v === null || v === undefined ? "–" : v >= 1000 ? (v / 1000).toFixed(2) + " s" : v.toFixed(0) + " ms"),
  pct: (v) => (v * 100).toFixed(1) + "%",
  secs: (ms) => (ms >= 60000 ? Math.round(ms / 60000) + " min" : Math.ceil(ms / 1000) + " s"),
  time: (unix) => new Date(unix * 1000).toLocaleTimeString(),
  usd: (v) => "$" + (v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(2) : v.toFixed(4)),
};

function healthBadge(health) {
  if (!health || !health.cooling_down) return h("span", { class: "badge ok", text: "healthy" });
  const down = health.reason === "health_check" || health.reason === "unauthorized";
  return h("span", {
    class: "badge " + (down ? "down" : "cool"),
    title: `${health.consecutive_failures} consecutive failures`,
    text: `${health.reason.replace("_", " ")} · ${fmt.secs(health.remaining_ms)}`,
  });
}

// ----------------------------------------------------------------- charts

function chart(container, series, colors) {
  const W = 600, H = 160, P = 4;
  const n = Math.max(...series.map((s) => s.length), 2);
  const max = Math.max(1, ...series.flat());
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  for (let i = 1; i < 4; i++) {
    const line = document.createElementNS(svg.namespaceURI, "line");
    const y = (H * i) / 4;
    Object.entries({ x1: 0, x2: W, y1: y, y2: y, stroke: "#2a303b", "stroke-width": 1 }).forEach(([k, v]) => line.setAttribute(k, v));
    svg.append(line);
  }
  series.forEach((values, idx) => {
    const pts = values.map((v, i) => `${(i / (n - 1)) * W},${H - P - (v / max) * (H - 2 * P)}`);
    if (pts.length < 2) return;
    const area = document.createElementNS(svg.namespaceURI, "polygon");
    area.setAttribute("points", `0,${H} ${pts.join(" ")} ${((values.length - 1) / (n - 1)) * W},${H}`);
    area.setAttribute("fill", colors[idx]);
    area.setAttribute("fill-opacity", "0.12");
    const line = document.createElementNS(svg.namespaceURI, "polyline");
    line.setAttribute("points", pts.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", colors[idx]);
    line.setAttribute("stroke-width", "2");
    line.setAttribute("vector-effect", "non-scaling-stroke");
    svg.append(area, line);
  });
  container.replaceChildren(svg);
}

// ----------------------------------------------------------------- render

function rowKey(r) { return `${r.provider}|${r.fingerprint}|${r.model}`; }

function render(state) {
  const report = state.report;
  const now = Date.now();
  const dt = previous ? (now - previous.at) / 1000 : 0;
  const before = new Map((previous ? previous.report.usage : []).map((r) => [rowKey(r), r]));
  const latency = new Map(state.latency.map((l) => [`${l.provider}|${l.key}|${l.model}`, l]));

  // Header pills and banner.
  const store = report.store;
  $("#pills").replaceChildren(
    h("span", { class: "pill " + (store.healthy ? "ok" : "bad"), text: `store: ${store.kind} ${store.healthy ? "ok" : "degraded"}` }),
    h("span", { class: "pill", text: `window: ${report.usage_window}` }),
    h("span", { class: "pill " + (state.reload.last_error ? "bad" : "ok"), text: state.reload.last_error ? "last reload rejected" : `config v${state.reload.reloads + 1}` }),
  );
  const banner = $("#banner");
  const problems = [state.reload.last_error, store.healthy ? null : `Usage store: ${store.last_error}`].filter(Boolean);
  banner.textContent = problems.join("\n");
  banner.classList.toggle("hidden", problems.length === 0);

  // Tiles, from the last two samples of the series.
  const pts = state.series;
  const last = pts[pts.length - 1] || { requests: 0, errors: 0, prompt_tokens: 0, completion_tokens: 0 };
  const step = state.series_step_secs || 5;
  const totals = report.usage.reduce((a, r) => ({ req: a.req + r.requests, err: a.err + r.errors, tok: a.tok + r.tokens, usd: a.usd + (r.cost_usd || 0), priced: a.priced || r.cost_usd != null }), { req: 0, err: 0, tok: 0, usd: 0, priced: false });
  const tiles = [
    ["Requests / s", fmt.rate(last.requests / step)],
    ["Tokens / s", fmt.rate((last.prompt_tokens + last.completion_tokens) / step)],
    ["Error rate", last.requests ? fmt.pct(last.errors / last.requests) : "0.0%"],
    ["In flight", fmt.int(state.in_flight)],
    ["Open streams", fmt.int(state.open_streams)],
    ["Requests (all time)", fmt.int(totals.req)],
    ["Tokens (all time)", fmt.int(totals.tok)],
    ["Spent (all time)", totals.priced ? fmt.usd(totals.usd) : "no prices"],
  ];
  const cache = state.cache;
  if (cache) {
    const looked = cache.hits + cache.misses;
    tiles.push(["Cache hit rate", looked ? fmt.pct(cache.hits / looked) : "–"]);
    tiles.push(["Saved by the cache", fmt.usd(cache.saved_usd)]);
  }
  $("#tiles").replaceChildren(...tiles.map(([label, value]) => h("div", { class: "tile" }, h("div", { class: "label", text: label }), h("div", { class: "value", text: value }))));

  chart($("#chart-traffic"), [pts.map((p) => p.requests / step), pts.map((p) => p.errors / step)], ["#5b9dff", "#f85149"]);
  chart($("#chart-tokens"), [pts.map((p) => p.prompt_tokens / step), pts.map((p) => p.completion_tokens / step)], ["#b392f0", "#5b9dff"]);
  $("#traffic-legend").replaceChildren(h("span", { class: "legend-a", text: "requests/s" }), " · ", h("span", { class: "legend-b", text: "errors/s" }));
  $("#tokens-legend").replaceChildren(h("span", { class: "legend-c", text: "prompt/s" }), " · ", h("span", { class: "legend-a", text: "completion/s" }));

  // Keys × models.
  $("#usage-table tbody").replaceChildren(...report.usage.map((r) => {
    const was = before.get(rowKey(r));
    const rps = was && dt > 0 ? Math.max(0, r.requests - was.requests) / dt : 0;
    const l = latency.get(`${r.provider}|${r.key}|${r.model}`) || { latency: {} };
    return h("tr", { "data-key": r.key, "data-model": r.model },
      h("td", { text: r.provider }),
      h("td", {}, r.key, h("span", { class: "fp", text: r.fingerprint })),
      h("td", { text: r.model }),
      h("td", { class: "num", "data-field": "tokens", text: fmt.int(r.tokens) }),
      h("td", { class: "num", "data-field": "cost", text: r.cost_usd == null ? "–" : fmt.usd(r.cost_usd) }),
      h("td", { class: "num", text: fmt.int(r.routing_usage) }),
      h("td", { class: "num", text: fmt.rate(rps) }),
      h("td", { class: "num", text: r.requests ? `${fmt.int(r.errors)} (${fmt.pct(r.errors / r.requests)})` : "0" }),
      h("td", { class: "num", text: fmt.ms(l.latency.p50_ms) }),
      h("td", { class: "num", text: fmt.ms(l.latency.p95_ms) }),
      h("td", { class: "num", text: fmt.ms(l.latency.p99_ms) }),
      h("td", {}, healthBadge(r.health)));
  }));

  renderGroups(state);
  renderProviders(state);

  $("#recent-table tbody").replaceChildren(...state.recent.slice(0, 25).map((r) => h("tr", {},
    h("td", { text: fmt.time(r.at) }),
    h("td", {}, h("code", { text: r.request_id })),
    h("td", { text: r.group }),
    h("td", { text: `${r.provider} / ${r.key}` }),
    h("td", { text: r.model }),
    h("td", { class: "num", text: r.status }),
    h("td", { text: r.outcome }),
    h("td", { class: "num", text: fmt.int(r.total_tokens) }),
    h("td", { class: "num", text: fmt.ms(r.latency_ms) }))));

  $("#footer").textContent = `Config: ${state.config_source}` + (state.overlay_file ? ` · dashboard edits: ${state.overlay_file}` : " · dashboard edits are kept in memory");
  previous = { at: now, report };
}

function renderGroups(state) {
  const providers = state.providers.map((p) => p.name);
  $("#groups").replaceChildren(...state.groups.map((g) => {
    const rows = g.models.map((m) => {
      const id = `${g.name}|${m.provider}|${m.model}`;
      const weight = h("input", { type: "number", min: "0", step: "1", value: m.weight, "data-weight": id, "aria-label": `weight of ${m.model}` });
      return h("tr", { class: m.enabled ? "" : "disabled", "data-entry": id },
        h("td", { text: m.provider }),
        h("td", { text: m.model }),
        h("td", {}, weight, " ", h("button", { class: "small", type: "button", "data-save-weight": id,
          onclick: () => edit({ op: "set_weight", group: g.name, provider: m.provider, model: m.model, weight: Number(weight.value) }) }, "Save")),
        h("td", {}, h("label", { class: "switch" }, h("input", { type: "checkbox", checked: m.enabled, "data-model-toggle": id,
          onchange: (e) => edit({ op: "set_model_enabled", group: g.name, provider: m.provider, model: m.model, enabled: e.target.checked }) }), m.enabled ? "on" : "off")),
        h("td", {}, h("button", { class: "small ghost danger", type: "button",
          onclick: () => confirm(`Remove ${m.provider}/${m.model} from ${g.name}?`) && edit({ op: "remove_model", group: g.name, provider: m.provider, model: m.model }) }, "Remove")));
    });
    const provider = h("select", { "aria-label": "provider" }, ...providers.map((p) => h("option", { value: p, text: p })));
    const model = h("input", { type: "text", placeholder: "provider's model name", "aria-label": "model name" });
    const weight = h("input", { type: "number", min: "0", value: 1, "aria-label": "weight" });
    return h("div", { class: "group", "data-group": g.name },
      h("h3", { text: g.name }),
      h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, ...["Provider", "Model", "Weight", "Enabled", ""].map((t) => h("th", { text: t })))), h("tbody", {}, rows))),
      h("form", { class: "inline-form", onsubmit: (e) => { e.preventDefault(); edit({ op: "add_model", group: g.name, provider: provider.value, model: model.value, weight: Number(weight.value) }); } },
        provider, model, weight, h("button", { type: "submit", class: "small" }, "Add entry")));
  }));
}

function renderProviders(state) {
  const health = new Map(state.report.providers.map((p) => [p.name, p]));
  $("#providers").replaceChildren(...state.providers.map((p) => {
    const live = health.get(p.name) || { keys: [] };
    const keyHealth = new Map(live.keys.map((k) => [k.fingerprint, k.health]));
    const rows = p.keys.map((k) => h("tr", { class: k.enabled ? "" : "disabled", "data-provider-key": k.alias },
      h("td", {}, k.alias, h("span", { class: "fp", text: k.fingerprint })),
      h("td", {}, k.enabled ? healthBadge(keyHealth.get(k.fingerprint)) : h("span", { class: "badge", text: "disabled" })),
      h("td", {}, h("label", { class: "switch" }, h("input", { type: "checkbox", checked: k.enabled, "data-key-toggle": k.alias,
        onchange: (e) => edit({ op: "set_key_enabled", provider: p.name, fingerprint: k.fingerprint, enabled: e.target.checked }) }), k.enabled ? "on" : "off")),
      h("td", {}, h("button", { class: "small ghost danger", type: "button",
        onclick: () => confirm(`Remove key ${k.alias} (${k.fingerprint})?`) && edit({ op: "remove_key", provider: p.name, fingerprint: k.fingerprint }) }, "Remove"))));
    const key = h("input", { type: "password", placeholder: "new API key (shown once, then by fingerprint)", autocomplete: "off", "aria-label": "new key" });
    return h("div", { class: "provider", "data-provider": p.name },
      h("h3", {}, p.name, " ", live.health ? healthBadge(live.health) : null),
      h("div", { class: "muted", text: p.base_url }),
      h("div", { class: "scroll" }, h("table", {}, h("tbody", {}, rows))),
      h("form", { class: "inline-form", onsubmit: (e) => { e.preventDefault(); const v = key.value; key.value = ""; edit({ op: "add_key", provider: p.name, key: v }); } },
        key, h("button", { type: "submit", class: "small" }, "Add key")));
  }));
}

// -------------------------------------------------------------- lifecycle

async function refresh() {
  try {
    render(await api("/ui/api/state"));
  } catch (e) {
    if (e.status === 401) return showLogin();
    toast(e.message, true);
  }
}

function showLogin() {
  clearInterval(timer);
  csrf = null;
  $("#dash").classList.add("hidden");
  $("#logout").classList.add("hidden");
  $("#login-view").classList.remove("hidden");
}

function showDash() {
  $("#login-view").classList.add("hidden");
  $("#dash").classList.remove("hidden");
  $("#logout").classList.remove("hidden");
  refresh();
  clearInterval(timer);
  timer = setInterval(refresh, 2000);
}

document.addEventListener("DOMContentLoaded", async () => {
  $("#login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const r = await api("/ui/login", { method: "POST", body: JSON.stringify({ key: $("#admin-key").value }) });
      csrf = r.csrf;
      $("#admin-key").value = "";
      $("#login-error").textContent = "";
      showDash();
    } catch (err) {
      $("#login-error").textContent = err.status === 404 ? "The dashboard is disabled: set admin_key in the config." : err.status === 403 ? "That is the client key; use the admin key." : "Wrong admin key.";
    }
  });
  $("#logout").addEventListener("click", async () => { await api("/ui/logout", { method: "POST" }).catch(() => {}); showLogin(); });
  $("#reset-all").addEventListener("click", () => confirm("Reset usage for every key and model?") && edit({ op: "reset_usage" }));
  try {
    csrf = (await api("/ui/session")).csrf;
    showDash();
  } catch (_) {
    showLogin();
  }
});
