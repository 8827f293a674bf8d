// Deja dashboard: reads /admin/* with the admin token; no build step, no framework.
"use strict";

const REFRESH_MS = 5000;
const TOKEN_KEY = "deja-admin-token";
const $ = (id) => document.getElementById(id);
let chart = null;
let entriesOffset = 0;
let entriesQuery = "";

function takeToken() {
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname);  // the token leaves the address bar
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function showLogin(message) {
  $("app").classList.add("hidden");
  $("login").classList.remove("hidden");
  $("error").textContent = message || "";
}

async function api(path, options = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const response = await fetch(path, { ...options, headers: { Authorization: `Bearer ${token}` } });
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("That token was refused.");
    throw new Error("unauthorised");
  }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}

const integer = (n) => Number(n || 0).toLocaleString("en-US");
const ms = (n) => (n === null || n === undefined ? "–" : `${n < 10 ? n.toFixed(2) : Math.round(n)} ms`);
const usd = (n) => {
  const v = Number(n || 0);
  return v === 0 ? "$0" : v < 0.01 ? `$${v.toPrecision(2)}` : `$${v.toFixed(v >= 100 ? 0 : 2)}`;
};
const ago = (t) => {
  const s = Math.max(0, Math.round(Date.now() / 1000 - t));
  return s < 60 ? `${s}s ago` : s < 3600 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
};

function setValue(id, value, text) {
  const el = $(id);
  el.dataset.value = value === null || value === undefined ? "" : String(value);
  el.textContent = text;
}

function cell(text, label, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (label) td.dataset.label = label;
  if (className) td.className = className;
  return td;
}

function fillTable(tableId, rows, makeRow, emptyText) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren();
  if (!rows.length) {
    const tr = document.createElement("tr");
    tr.appendChild(cell(emptyText, null, "muted"));
    body.appendChild(tr);
    return;
  }
  for (const row of rows) body.appendChild(makeRow(row));
}

function renderStats(s) {
  $("meta").textContent = `${s.embedding_model} · up ${Math.round(s.uptime_seconds)}s · queue ${s.writeback_queue}`;
  setValue("stat-requests", s.requests.total, integer(s.requests.total));
  $("stat-requests-sub").textContent =
    `${integer(s.requests.HIT)} hit · ${integer(s.requests.STALE || 0)} stale · ${integer(s.requests.MISS)} miss · ${integer(s.requests.BYPASS + s.requests.REFRESH)} bypass/refresh`;
  setValue("stat-hit-rate", s.hit_rate, s.hit_rate === null ? "–" : `${(s.hit_rate * 100).toFixed(1)}%`);
  $("stat-hits-sub").textContent = `${integer(s.matches.exact)} exact · ${integer(s.matches.semantic)} semantic`;
  setValue("stat-tokens-saved", s.tokens_saved.total, integer(s.tokens_saved.total));
  $("stat-tokens-sub").textContent = `${integer(s.tokens_saved.prompt)} in · ${integer(s.tokens_saved.completion)} out`;
  setValue("stat-cost-saved", s.cost_saved_usd, usd(s.cost_saved_usd));
  $("stat-unpriced").textContent = s.unpriced_tokens_saved
    ? `+ ${integer(s.unpriced_tokens_saved)} tokens without a price (${s.unpriced_models.join(", ")})` : "estimated";
  setValue("stat-entries", s.entries, integer(s.entries));
  $("stat-entries-sub").textContent = `${integer(s.partitions)} partitions · ${integer(s.index_vectors)} vectors`;
  const lookup = s.latency_ms.lookup, upstream = s.latency_ms.upstream;
  setValue("stat-lookup-p50", lookup.p50, ms(lookup.p50));
  $("stat-lookup-sub").textContent = `p90 ${ms(lookup.p90)} · p99 ${ms(lookup.p99)} · n=${lookup.count}`;
  setValue("stat-upstream-p50", upstream.p50, ms(upstream.p50));
  $("stat-upstream-sub").textContent = `p90 ${ms(upstream.p90)} · p99 ${ms(upstream.p99)} · n=${upstream.count}`;
  const errors = s.errors.embedding + s.errors.store + s.errors.upstream;
  setValue("stat-errors", errors, integer(errors));
  $("stat-errors-sub").textContent = `embedding ${s.errors.embedding} · store ${s.errors.store} · upstream ${s.errors.upstream}`;

  fillTable("top-table", s.top_entries, (e) => {
    const tr = document.createElement("tr");
    tr.append(cell(`#${e.id}`, "Entry"), cell(e.question, "Question"), cell(e.model, "Model"),
              cell(integer(e.hits), "Hits", "num"));
    return tr;
  }, "No hits yet.");
  fillTable("recent-table", s.recent_hits, (h) => {
    const tr = document.createElement("tr");
    const match = h.similarity === null ? h.match : `${h.match} ${h.similarity.toFixed(4)}`;
    tr.append(cell(h.asked, "Asked"), cell(`#${h.entry_id} ${h.matched}`, "Matched"), cell(match, "Match"),
              cell(ago(h.at), "When"));
    return tr;
  }, "No hits yet.");
  renderChart(s.series);
}

function renderChart(series) {
  const box = $("chart");
  $("chart-empty").classList.toggle("hidden", series.some((b) => b.requests > 0));
  // The last hour, one point a minute (minutes without lookups are gaps).
  const byMinute = new Map(series.map((b) => [b.t, b]));
  const now = Math.floor(Date.now() / 60000) * 60;
  const xs = [], rate = [], requests = [];
  for (let t = now - 59 * 60; t <= now; t += 60) {
    const b = byMinute.get(t);
    xs.push(t);
    rate.push(b && b.requests ? (100 * b.hits) / b.requests : null);
    requests.push(b ? b.requests : 0);
  }
  const data = [xs, rate, requests];
  const width = Math.max(240, box.clientWidth);
  if (chart && chart.width !== width) { chart.destroy(); chart = null; }
  if (chart) { chart.setData(data); return; }
  if (typeof uPlot === "undefined") return;
  chart = new uPlot({
    width, height: 220,
    series: [{}, { label: "hit rate %", stroke: "#2f6fed", width: 2, scale: "%", spanGaps: false, points: { show: true } },
             { label: "lookups", stroke: "#98a2b3", scale: "n", points: { show: true } }],
    scales: { "%": { range: [0, 100] }, n: { range: (u, min, max) => [0, Math.max(1, max)] } },
    axes: [{}, { scale: "%", label: "%" }, { scale: "n", side: 1, grid: { show: false } }],
  }, data, box);
}

async function loadEntries(reset) {
  if (reset) entriesOffset = 0;
  const params = new URLSearchParams({ limit: "25", offset: String(entriesOffset) });
  if (entriesQuery) params.set("q", entriesQuery);
  const page = await api(`/admin/entries?${params}`);
  const body = document.querySelector("#entries-table tbody");
  if (reset) body.replaceChildren();
  $("entries-count").textContent = `${integer(page.total)} entr${page.total === 1 ? "y" : "ies"}` +
    (entriesQuery ? ` matching “${entriesQuery}”` : "");
  for (const e of page.entries) {
    const tr = document.createElement("tr");
    tr.dataset.entryId = e.id;
    const del = document.createElement("button");
    del.type = "button";
    del.className = "danger";
    del.textContent = "Delete";
    del.setAttribute("aria-label", `delete entry ${e.id}`);
    del.addEventListener("click", () => deleteEntry(e, tr));
    const actions = cell("", null);
    actions.appendChild(del);
    tr.append(cell(`#${e.id}`, "Entry"), cell(e.question, "Question"), cell(e.answer, "Answer"),
              cell(e.namespace ? `${e.model} · ${e.namespace}` : e.model, "Model"), cell(integer(e.hits), "Hits", "num"),
              actions);
    body.appendChild(tr);
  }
  entriesOffset += page.entries.length;
  $("more").classList.toggle("hidden", page.next_offset === null);
}

async function deleteEntry(entry, row) {
  if (!confirm(`Delete entry #${entry.id}?\n\n${entry.question}`)) return;
  try {
    await api(`/admin/entries/${entry.id}`, { method: "DELETE" });
    row.remove();
    $("error").textContent = "";
    await refresh();
  } catch (err) {
    $("error").textContent = `Delete failed: ${err.message}`;
  }
}

async function refresh() {
  try {
    renderStats(await api("/admin/stats"));
    document.body.dataset.loaded = "true";
    if ($("error").textContent.startsWith("Refresh failed")) $("error").textContent = "";
  } catch (err) {
    if (err.message !== "unauthorised") $("error").textContent = `Refresh failed: ${err.message}`;
  }
}

async function start() {
  $("login").classList.add("hidden");
  $("app").classList.remove("hidden");
  await refresh();
  await loadEntries(true);
}

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token-input").value);
  start();
});
$("search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  entriesQuery = $("search-input").value.trim();
  loadEntries(true).catch((err) => { $("error").textContent = err.message; });
});
$("more").addEventListener("click", () => loadEntries(false));
window.addEventListener("resize", () => { if (chart) refresh(); });

if (takeToken()) start(); else showLogin();
setInterval(() => { if (sessionStorage.getItem(TOKEN_KEY)) refresh(); }, REFRESH_MS);
