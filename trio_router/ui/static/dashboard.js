// The dashboard: reads /api/* with the session cookie and draws it. No framework, no build
// step; every value reaches the page as text (textContent), never as markup.
"use strict";

const CSRF = document.querySelector('meta[name="trio-router-csrf"]').content;
const EXPIRES = Number(document.querySelector('meta[name="trio-router-session-expires"]').content);
const SVG = "http://www.w3.org/2000/svg";
// Colour-blind-safe categorical palette (Okabe & Ito), then greys for the rest.
const COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"];
const BUCKET_SECONDS = { hour: 3600, day: 86400 };
const SPAN = { hour: 86400, day: 30 * 86400 };
let keyNames = {};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function usd(value) {
  if (value === null || value === undefined) return "–";
  if (value !== 0 && Math.abs(value) < 0.01) return "$" + value.toPrecision(2);
  return "$" + value.toFixed(2);
}

const number = (value) => (value ?? 0).toLocaleString("en");
const when = (seconds) => new Date(seconds * 1000).toISOString().slice(0, 16).replace("T", " ");

function showProblem(message) {
  const node = document.getElementById("problem");
  node.textContent = message;
  node.hidden = !message;
}

// Every call to the router: a mutating one carries the CSRF header the page was given; a lost
// session (expired, or the admin key changed) goes back to the login page.
async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (options.method && options.method !== "GET") headers["x-trio-router-csrf"] = CSRF;
  const response = await fetch(path, { ...options, headers, credentials: "same-origin" });
  if (response.status === 401) {
    window.location.assign("/ui/login");
    throw new Error("session ended");
  }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
  return body;
}

function fill(table, rows) {
  const body = document.querySelector(`#${table} tbody`);
  if (!rows.length) {
    const columns = document.querySelectorAll(`#${table} thead th`).length;
    body.replaceChildren(el("tr", { class: "none" }, el("td", { colspan: columns }, "none yet")));
    return;
  }
  body.replaceChildren(...rows.map((cells) => el("tr", {}, ...cells.map((c) => (c instanceof Node ? c : el("td", {}, c))))));
}

async function loadTotals() {
  const [usage, streams] = await Promise.all([api("/api/usage"), api("/api/streams")]);
  const providers = Object.entries(usage.providers || {});
  const priced = providers.map(([, p]) => p.costUsd).filter((c) => c !== null && c !== undefined);
  const cost = usage.costUsd !== undefined ? usage.costUsd : priced.length ? priced.reduce((a, b) => a + b, 0) : null;
  document.getElementById("total-cost").textContent = usd(cost);
  document.getElementById("total-requests").textContent = number(usage.totalRequests);
  document.getElementById("total-input").textContent = number(usage.totalInputTokens);
  document.getElementById("total-output").textContent = number(usage.totalOutputTokens);
  document.getElementById("open-streams").textContent = `${streams.open} / ${streams.max || "∞"}`;
  fill("providers", providers.map(([name, p]) => [name, number(p.requests), number(p.inputTokens), number(p.outputTokens), number(p.cacheReadTokens), usd(p.costUsd)]));
}

function metricOf(row, metric) {
  if (metric === "tokens") return row.inputTokens + row.outputTokens;
  return row[metric] ?? 0;
}

function groupLabel(by, group) {
  if (by === "key") return keyNames[group] ? `${keyNames[group]} (${group})` : group || "APIKEY (no client key)";
  return group || (by === "user" ? "(no user)" : "(none)");
}

// Stacked bars, one per bucket, one colour per group (the largest groups first).
function drawChart(rows, bucket, by, metric, since, until) {
  const step = BUCKET_SECONDS[bucket];
  const first = Math.floor(since / step) * step;
  const starts = [];
  for (let t = first; t < until; t += step) starts.push(t);
  const totals = {};
  for (const row of rows) totals[row.group] = (totals[row.group] || 0) + metricOf(row, metric);
  const groups = Object.keys(totals).sort((a, b) => totals[b] - totals[a]);
  const colour = (g) => COLOURS[groups.indexOf(g)] || "#999999";
  const stacks = new Map(starts.map((t) => [t, []]));
  for (const row of rows) {
    const at = Math.floor(row.start / step) * step;
    if (stacks.has(at)) stacks.get(at).push(row);
  }
  const peak = Math.max(0, ...[...stacks.values()].map((list) => list.reduce((s, r) => s + metricOf(r, metric), 0)));
  const width = 900, height = 260, left = 64, bottom = 24, top = 8;
  const plotHeight = height - bottom - top;
  const barWidth = (width - left) / starts.length;
  const scale = peak > 0 ? plotHeight / peak : 0;
  const format = metric === "costUsd" ? usd : number;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", "aria-hidden": "true" });
  for (let i = 0; i <= 4; i++) {
    const y = top + plotHeight - (plotHeight * i) / 4;
    chart.append(svg("line", { x1: left, x2: width, y1: y, y2: y, class: "grid" }));
    chart.append(svg("text", { x: left - 6, y: y + 4, "text-anchor": "end", class: "axis" }, format((peak * i) / 4)));
  }
  const labelEvery = Math.ceil(starts.length / 12);
  starts.forEach((t, i) => {
    let y = top + plotHeight;
    const x = left + i * barWidth;
    const list = stacks.get(t).sort((a, b) => groups.indexOf(a.group) - groups.indexOf(b.group));
    for (const row of list) {
      const h = metricOf(row, metric) * scale;
      y -= h;
      chart.append(svg("rect", { x: x + 1, y, width: Math.max(barWidth - 2, 1), height: h, fill: colour(row.group) },
        svg("title", {}, `${when(t)} · ${groupLabel(by, row.group)}: ${format(metricOf(row, metric))}`)));
    }
    if (i % labelEvery === 0) {
      const label = bucket === "hour" ? when(t).slice(11) : when(t).slice(5, 10);
      chart.append(svg("text", { x: x + barWidth / 2, y: height - 6, "text-anchor": "middle", class: "axis" }, label));
    }
  });
  if (!rows.length) chart.append(svg("text", { x: (width + left) / 2, y: height / 2, "text-anchor": "middle", class: "empty" }, "no requests in this period"));
  document.getElementById("chart").replaceChildren(chart);
  document.getElementById("chart").setAttribute("aria-label", `${metric} per ${by} per ${bucket}: ${groups.map((g) => `${groupLabel(by, g)} ${format(totals[g])}`).join(", ") || "no requests"}`);
  document.getElementById("legend").replaceChildren(...groups.map((g) => {
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = colour(g); // CSSOM: allowed by the CSP, unlike a style attribute
    return el("li", {}, swatch, `${groupLabel(by, g)}: ${format(totals[g])}`);
  }));
}

let timelineAsked = 0;

async function loadTimeline() {
  // Only the newest choice is drawn: an older answer arriving late must not overwrite it.
  const asked = ++timelineAsked;
  const bucket = document.getElementById("bucket").value;
  const by = document.getElementById("by").value;
  const metric = document.getElementById("metric").value;
  const until = Math.floor(Date.now() / 1000) + 1;
  const since = until - SPAN[bucket];
  const data = await api(`/api/usage/timeline?bucket=${bucket}&by=${by}&since=${since}&until=${until}`);
  if (asked !== timelineAsked) return;
  drawChart(data.rows, bucket, by, metric, data.since, data.until);
  fill("timeline-table", data.rows.slice().reverse().map((r) => [when(r.start), groupLabel(by, r.group), number(r.requests), number(r.errors), number(r.inputTokens), number(r.outputTokens), usd(r.costUsd)]));
}

async function keyAction(key, action) {
  if (action === "revoke") {
    if (!window.confirm(`Revoke the key "${key.name}"? Its holder gets a 401 from now on.`)) return;
    await api(`/api/keys/${encodeURIComponent(key.id)}`, { method: "DELETE" });
  } else {
    await api(`/api/keys/${encodeURIComponent(key.id)}`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ disabled: action === "disable" }),
    });
  }
  await Promise.all([loadKeys(), loadTimeline()]);
}

async function loadKeys() {
  const { keys } = await api("/api/keys");
  keyNames = Object.fromEntries(keys.map((k) => [k.id, k.name]));
  const usage = await Promise.all(keys.map((k) => api(`/api/usage/keys/${encodeURIComponent(k.id)}`)));
  fill("keys", keys.map((k, i) => {
    const expired = k.expires_at && Date.parse(k.expires_at) <= Date.now();
    const state = k.disabled ? "disabled" : expired ? "expired" : "active";
    const toggle = el("button", { type: "button" }, k.disabled ? "Enable" : "Disable");
    toggle.setAttribute("aria-label", `${k.disabled ? "Enable" : "Disable"} key ${k.name}`);
    toggle.addEventListener("click", () => keyAction(k, k.disabled ? "enable" : "disable").catch((e) => showProblem(e.message)));
    const revoke = el("button", { type: "button", class: "danger", "aria-label": `Revoke key ${k.name}` }, "Revoke");
    revoke.addEventListener("click", () => keyAction(k, "revoke").catch((e) => showProblem(e.message)));
    return [k.name, k.user || "–", el("td", {}, el("code", {}, k.prefix + "…")), state, (k.created_at || "").slice(0, 16).replace("T", " "),
      number(usage[i].totalRequests), usd(usage[i].costUsd), el("td", { class: "actions" }, toggle, revoke)];
  }));
}

async function createKey(event) {
  event.preventDefault();
  const form = event.target;
  const spec = { name: form.name.value.trim() };
  if (form.user.value.trim()) spec.user = form.user.value.trim();
  const limits = {};
  if (form.rpm.value) limits.rpm = Number(form.rpm.value);
  if (form.budget_usd.value) limits.budget_usd = Number(form.budget_usd.value);
  if (Object.keys(limits).length) spec.limits = limits;
  const made = await api("/api/keys", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(spec) });
  document.getElementById("secret-value").textContent = made.key;
  document.getElementById("new-secret").hidden = false;
  form.reset();
  await loadKeys();
}

async function loadErrors() {
  const { errors } = await api("/api/errors/recent?limit=50");
  fill("errors", errors.map((e) => [when(e.at), e.status, e.provider ? `${e.provider},${e.model}` : "–", e.keyId ? groupLabel("key", e.keyId) : "–", e.message]));
}

async function loadConfig() {
  const source = document.getElementById("config-source");
  const chosen = source.value;
  const [config, { backups }] = await Promise.all([
    api(chosen ? `/api/config/backups/${encodeURIComponent(chosen)}` : "/api/config"),
    api("/api/config/backups"),
  ]);
  document.getElementById("config").textContent = JSON.stringify(config, null, 2);
  source.replaceChildren(el("option", { value: "" }, "the config now"),
    ...backups.map((b) => el("option", { value: b.name }, `backup of ${when(b.at)} (${b.name})`)));
  source.value = chosen;
}

async function backupNow() {
  const made = await api("/api/config/backup", { method: "POST" });
  showProblem("");
  await loadConfig();
  document.getElementById("config-source").value = made.backup.split("/").pop();
}

async function refresh() {
  try {
    await loadKeys();
    await Promise.all([loadTotals(), loadTimeline(), loadErrors(), loadConfig()]);
    showProblem("");
  } catch (error) {
    showProblem(error.message);
  }
}

if (EXPIRES) document.getElementById("session").textContent = `session until ${when(EXPIRES)} UTC`;
const guard = (work) => (...args) => work(...args).catch((error) => showProblem(error.message));
for (const id of ["metric", "by", "bucket"]) document.getElementById(id).addEventListener("change", guard(loadTimeline));
document.getElementById("config-source").addEventListener("change", guard(loadConfig));
document.getElementById("backup-now").addEventListener("click", guard(backupNow));
document.getElementById("new-key").addEventListener("submit", guard(createKey));
document.getElementById("refresh").addEventListener("click", refresh);
document.getElementById("secret-done").addEventListener("click", () => {
  document.getElementById("secret-value").textContent = "";
  document.getElementById("new-secret").hidden = true;
});
refresh();
