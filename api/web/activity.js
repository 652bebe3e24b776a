// The Activity page: an org's audit log, read through the JSON API with the
// session cookie set at sign-in. The URL holds the filters, so a view can be
// shared and reloaded.
"use strict";

const orgID = decodeURIComponent(location.pathname.split("/")[2] || "");
const api = (path) => `/api/orgs/${encodeURIComponent(orgID)}${path}`;
const $ = (id) => document.getElementById(id);
const pageSize = 50;

let cursor = "";       // next page of the current query, "" when none
let loading = false;
let generation = 0;    // bumps on every new query, so stale responses are dropped

// filtersFromURL reads the filters from the page's query string.
function filtersFromURL() {
  const q = new URLSearchParams(location.search);
  const f = {
    action: q.get("action") || "",
    target_type: q.get("target_type") || "",
    actor: q.get("actor") || "",
    range: q.get("range") || "7d",
    since: q.get("since") || "",
    until: q.get("until") || "",
  };
  if (f.since || f.until) f.range = "custom";
  return f;
}

// query turns filters into the API's query parameters.
function query(f) {
  const q = new URLSearchParams();
  for (const k of ["action", "target_type", "actor"]) if (f[k]) q.set(k, f[k]);
  if (f.range === "custom") {
    if (f.since) q.set("since", f.since);
    if (f.until) q.set("until", f.until);
  } else {
    q.set("range", f.range);
  }
  return q;
}

function showFilters(f) {
  $("f-action").value = f.action;
  $("f-target").value = f.target_type;
  $("f-actor").value = f.actor;
  $("f-range").value = f.range;
  $("f-since").value = toLocalInput(f.since);
  $("f-until").value = toLocalInput(f.until);
  for (const el of document.querySelectorAll(".custom")) el.hidden = f.range !== "custom";
}

function readFilters() {
  const range = $("f-range").value;
  return {
    action: $("f-action").value.trim(),
    target_type: $("f-target").value,
    actor: $("f-actor").value.trim(),
    range,
    since: range === "custom" ? fromLocalInput($("f-since").value) : "",
    until: range === "custom" ? fromLocalInput($("f-until").value) : "",
  };
}

// toLocalInput and fromLocalInput convert between RFC 3339 and the value of
// a datetime-local input, which is in the browser's time zone.
function toLocalInput(rfc3339) {
  if (!rfc3339) return "";
  const d = new Date(rfc3339);
  if (isNaN(d)) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
function fromLocalInput(v) {
  if (!v) return "";
  const d = new Date(v);
  return isNaN(d) ? "" : d.toISOString();
}

// get fetches JSON from the API; a problem+json error becomes an Error with
// its status and the server's explanation.
async function get(url) {
  const res = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!res.ok) {
    let detail = res.statusText;
    try {
      const p = await res.json();
      detail = p.detail || p.title || detail;
    } catch (_) { /* not JSON */ }
    const err = new Error(detail);
    err.status = res.status;
    throw err;
  }
  return res.json();
}

function setStatus(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", !!isError);
}

// show reveals one of the page's states: sign-in, denied or content.
function show(state, message) {
  $("sign-in").hidden = state !== "sign-in";
  $("denied").hidden = state !== "denied";
  $("content").hidden = state !== "content";
  $("sign-out").hidden = state === "sign-in";
  if (state === "denied") $("denied").textContent = message;
  if (state === "sign-in") $("token").focus();
}

function handleAuthError(err) {
  if (err.status === 401) {
    show("sign-in");
    return true;
  }
  if (err.status === 403) {
    show("denied", "You are a member of this organization but not an owner. The audit log is visible to owners only: ask an owner of the organization for access.");
    return true;
  }
  if (err.status === 404) {
    show("denied", "There is no such organization, or you are not a member of it.");
    return true;
  }
  return false;
}

// load starts a new query from the filters in the URL.
async function load() {
  const f = filtersFromURL();
  showFilters(f);
  const q = query(f);
  $("export").href = api(`/audit?${q}&format=csv`);
  $("rows").textContent = "";
  cursor = "";
  const gen = ++generation;
  setStatus("Loading…");
  try {
    const [summary] = await Promise.all([get(api(`/audit/summary?${q}`)), loadPage(q, gen)]);
    if (gen !== generation) return;
    showSummary(summary);
    show("content");
    loadCatalog();
  } catch (err) {
    if (gen !== generation) return;
    if (!handleAuthError(err)) {
      show("content");
      setStatus(err.message, true);
    }
  }
}

// loadPage fetches the next page of the query and appends its rows.
async function loadPage(q, gen) {
  loading = true;
  $("more").hidden = true;
  try {
    const page = new URLSearchParams(q);
    page.set("limit", pageSize);
    if (cursor) page.set("cursor", cursor);
    const body = await get(api(`/audit?${page}`));
    if (gen !== generation) return;
    for (const e of body.events) $("rows").append(...renderEvent(e));
    cursor = body.next_cursor || "";
    $("more").hidden = !cursor;
    const n = $("rows").querySelectorAll("tr.event").length;
    setStatus(n === 0 ? "No events match these filters." : `${n} event${n === 1 ? "" : "s"}${cursor ? ", more below" : ""}.`);
  } finally {
    loading = false;
  }
}

async function more() {
  if (loading || !cursor) return;
  const gen = generation;
  setStatus("Loading more…");
  try {
    await loadPage(query(filtersFromURL()), gen);
  } catch (err) {
    if (!handleAuthError(err)) setStatus(err.message, true);
  }
}

const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
function relative(date) {
  const s = (date - Date.now()) / 1000;
  const units = [["year", 31536000], ["month", 2592000], ["day", 86400], ["hour", 3600], ["minute", 60]];
  for (const [unit, secs] of units) if (Math.abs(s) >= secs) return rtf.format(Math.round(s / secs), unit);
  return rtf.format(Math.round(s), "second");
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  e.append(...children.filter((c) => c !== null && c !== undefined));
  return e;
}

// renderEvent returns the event's row and its (hidden) details row.
function renderEvent(e) {
  const at = new Date(e.occurred_at);
  const id = `ev-${e.id}`;
  const actor = e.actor_type === "system" ? "System" : (e.actor_email || e.actor_id || "Unknown user");
  const via = e.metadata && e.metadata.via_pat ? el("span", { class: "via", title: "Acted with a personal access token" }, `via token ${e.metadata.via_pat}`) : null;
  const row = el("tr", { class: "event", tabindex: "0", "aria-expanded": "false", "aria-controls": id },
    el("td", { class: "when" },
      el("time", { datetime: e.occurred_at, title: at.toISOString() }, relative(at)),
      el("span", { class: "abs" }, at.toLocaleString())),
    el("td", { class: "actor" }, actor, via),
    el("td", { class: "action" }, el("code", {}, e.action)),
    el("td", { class: "target" }, e.target_type, e.target_id ? el("div", { class: "muted" }, e.target_id) : null));

  const fields = [["Event id", e.id], ["Time (UTC)", at.toISOString()], ["Actor type", e.actor_type],
    ["Actor id", e.actor_id], ["Actor email", e.actor_email], ["IP address", e.ip], ["User agent", e.user_agent],
    ["Request id", e.request_id], ["Target", `${e.target_type}${e.target_id ? " " + e.target_id : ""}`]];
  const dl = el("dl");
  for (const [k, v] of fields) if (v) dl.append(el("dt", {}, k), el("dd", {}, String(v)));
  const details = el("tr", { class: "details", id, hidden: "" },
    el("td", { colspan: "4" }, el("div", { class: "details" }, dl,
      el("pre", { "aria-label": "Metadata" }, JSON.stringify(e.metadata || {}, null, 2)))));

  const toggle = () => {
    const open = row.getAttribute("aria-expanded") !== "true";
    row.setAttribute("aria-expanded", String(open));
    details.hidden = !open;
  };
  row.addEventListener("click", toggle);
  row.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); toggle(); }
  });
  return [row, details];
}

// showSummary states the plan's retention and draws events per day.
function showSummary(s) {
  if (s.org && s.org.name) {
    $("org-name").textContent = s.org.name;
    document.title = `Activity · ${s.org.name}`;
  }
  if (s.org) {
    const plan = s.org.plan.charAt(0).toUpperCase() + s.org.plan.slice(1);
    $("retention").textContent = `Showing up to ${s.org.retention_days} days of activity — ${plan} plan.`;
  }
  const chart = $("chart");
  chart.textContent = "";
  const days = s.days || [];
  const max = Math.max(1, ...days.map((d) => d.count));
  for (const d of days) {
    const bar = el("div", { class: d.count ? "bar" : "bar zero", title: `${d.day}: ${d.count} event${d.count === 1 ? "" : "s"}` });
    bar.style.height = `${Math.max(2, (d.count / max) * 100)}%`; // a style property, which the page's CSP allows
    chart.append(bar);
  }
  $("chart-from").textContent = days.length ? days[0].day : "";
  $("chart-to").textContent = days.length > 1 ? days[days.length - 1].day : "";
  const total = days.reduce((n, d) => n + d.count, 0);
  chart.setAttribute("aria-label", `${total} events over ${days.length} days` +
    (days.length ? `, busiest day ${days.reduce((a, b) => (b.count > a.count ? b : a)).day}` : ""));
}

async function signIn(ev) {
  ev.preventDefault();
  $("sign-in-error").textContent = "";
  const res = await fetch("/api/session", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: $("token").value.trim() }),
  });
  if (!res.ok) {
    let detail = "That token was not accepted.";
    try { detail = (await res.json()).detail || detail; } catch (_) { /* not JSON */ }
    $("sign-in-error").textContent = detail;
    return;
  }
  $("token").value = "";
  load();
}

async function signOut() {
  await fetch("/api/session", { method: "DELETE", credentials: "same-origin" });
  show("sign-in");
}

function navigate(f) {
  const q = query(f);
  if (f.range === "7d") q.delete("range"); // the default stays out of the URL
  history.pushState(null, "", `${location.pathname}${q.size ? "?" + q : ""}`);
  load();
}

// loadCatalog fills the action dropdown once, after the API has let the
// visitor in: before sign-in it would only get a 401.
let catalogLoaded = false;
async function loadCatalog() {
  if (catalogLoaded) return;
  catalogLoaded = true;
  try {
    const body = await get("/api/audit/actions");
    const list = $("action-list");
    for (const a of body.actions || body) list.append(el("option", { value: a.action }, a.description || ""));
  } catch (_) {
    catalogLoaded = false; // try again with the next query
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("filters").addEventListener("submit", (ev) => { ev.preventDefault(); navigate(readFilters()); });
  $("f-range").addEventListener("change", () => {
    const custom = $("f-range").value === "custom";
    for (const e of document.querySelectorAll(".custom")) e.hidden = !custom;
    if (!custom) navigate(readFilters());
  });
  for (const id of ["f-target"]) $(id).addEventListener("change", () => navigate(readFilters()));
  $("clear").addEventListener("click", () => navigate({ action: "", target_type: "", actor: "", range: "7d" }));
  $("more").addEventListener("click", more);
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  window.addEventListener("popstate", load);
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) more();
  }, { rootMargin: "200px" }).observe($("more"));
  load();
});
