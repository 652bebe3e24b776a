// The Activity page: an org's audit log, read through the JSON API with the
// session cookie set at sign-in. The URL holds the filters, so a view can be
// shared and reloaded; the time zone (UTC, or the browser's) is the
// reader's own choice, kept in this browser.
"use strict";

const orgID = decodeURIComponent(location.pathname.split("/")[2] || "");
const api = (path) => `/api/orgs/${encodeURIComponent(orgID)}${path}`;
const pagePath = `/orgs/${encodeURIComponent(orgID)}/activity`;
// linkedEvent is the event a link opened the page on (/events/{id}), if any.
const linkedEvent = () => (location.pathname.match(/\/activity\/events\/([^/]+)$/) || [])[1] || "";
const $ = (id) => document.getElementById(id);
const pageSize = 50;
const dayMs = 86400000;

// presets are the ranges offered, with the days each needs the plan to keep.
const presets = {
  "24h": { label: "Last 24 hours", days: 1 },
  "7d": { label: "Last 7 days", days: 7 },
  "30d": { label: "Last 30 days", days: 30 },
  "90d": { label: "Last 90 days", days: 90 },
  "1y": { label: "Last year", days: 365 },
};
const defaultRange = "7d";

let cursor = "";       // next page of the current query, "" when none
let current = null;    // the current query's parameters: its pages keep its range
let loading = false;
let generation = 0;    // bumps on every new query, so stale responses are dropped
let total = 0;         // events matching the current query, from the summary
let retentionDays = 365; // the plan's, once a summary said it (till then the longest plan's)

// The time zone every time on the page is shown in: UTC unless the reader
// switched to the browser's, which this browser remembers.
const localZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
const zoneKey = "auditlog.activity.zone";
function zone() {
  try {
    return localStorage.getItem(zoneKey) === "local" ? localZone : "UTC";
  } catch (_) {
    return "UTC";
  }
}
const isUTC = () => zone() === "UTC";
const zoneLabel = () => (isUTC() ? "UTC" : localZone.replace(/_/g, " "));

// fmt formats an instant in the chosen zone.
function fmt(date, opts) {
  return new Intl.DateTimeFormat(undefined, { timeZone: zone(), ...opts }).format(date);
}
const fmtDateTime = (d) => fmt(d, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
// fmtShort is a row's time: no year when it is this year's in the chosen
// zone, the zone's short name (UTC, EST).
const yearOf = (d) => fmt(d, { year: "numeric" });
const fmtShort = (d) => fmt(d, { year: yearOf(new Date()) === yearOf(d) ? undefined : "numeric",
  month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short" });

// filtersFromURL reads the filters from the page's query string. A range
// the page does not know falls back to the default, and says so.
function filtersFromURL() {
  const q = new URLSearchParams(location.search);
  const f = {
    q: q.get("q") || q.get("action") || "", // action=: links made before q
    target_type: q.get("target_type") || "",
    actor: q.get("actor") || "",
    range: q.get("range") || defaultRange,
    since: q.get("since") || "",
    until: q.get("until") || "",
    warning: "",
  };
  if (f.since || f.until) f.range = "custom";
  else if (!presets[f.range]) {
    f.warning = `The link asks for range=${f.range}, which is not a range of this page: showing the ${presets[defaultRange].label.toLowerCase()}.`;
    f.range = defaultRange;
  }
  return f;
}

// bounds turns the filters into the instants and chart buckets asked for.
// Presets are aligned on the chosen zone's hours and days, so the chart's
// bars cover the range exactly: 24 hours, 7 days up to today, a year by
// week.
function bounds(f) {
  const now = new Date();
  if (f.range === "custom") {
    const since = f.since ? new Date(f.since) : null;
    const until = f.until ? new Date(f.until) : null;
    // The API starts no earlier than the plan keeps, whatever since says.
    const floor = new Date(now - retentionDays * dayMs);
    const span = ((until || now) - (since > floor ? since : floor)) / dayMs;
    return { since, until, bucket: span <= 2 ? "hour" : span <= 120 ? "day" : "week" };
  }
  if (f.range === "24h") {
    const hour = new Date(now);
    if (isUTC()) hour.setUTCMinutes(0, 0, 0);
    else hour.setMinutes(0, 0, 0);
    return { since: new Date(hour - 23 * 3600000), until: null, bucket: "hour" };
  }
  const days = presets[f.range].days;
  return { since: startOfDay(now, -(days - 1)), until: null, bucket: f.range === "1y" ? "week" : "day" };
}

// startOfDay is the midnight, in the chosen zone, that starts the day
// offset days from date's.
function startOfDay(date, offset) {
  if (isUTC()) return new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate() + offset));
  return new Date(date.getFullYear(), date.getMonth(), date.getDate() + offset);
}

// query turns filters into the API's query parameters.
function query(f) {
  const q = new URLSearchParams();
  for (const k of ["q", "target_type", "actor"]) if (f[k]) q.set(k, f[k]);
  const b = bounds(f);
  if (b.since) q.set("since", b.since.toISOString());
  if (b.until) q.set("until", b.until.toISOString());
  return q;
}

// urlQuery is the page's own query string for filters: the range by name.
function urlQuery(f) {
  const q = new URLSearchParams();
  for (const k of ["q", "target_type", "actor"]) if (f[k]) q.set(k, f[k]);
  if (f.range === "custom") {
    if (f.since) q.set("since", f.since);
    if (f.until) q.set("until", f.until);
  } else if (f.range !== defaultRange) {
    q.set("range", f.range);
  }
  return q;
}

function showFilters(f) {
  $("f-action").value = f.q;
  $("f-target").value = f.target_type;
  $("f-actor").value = f.actor;
  $("f-range").value = f.range;
  $("f-since").value = toInput(f.since);
  $("f-until").value = toInput(f.until);
  $("f-tz").value = isUTC() ? "UTC" : "local";
  for (const id of ["f-since-zone", "f-until-zone"]) $(id).textContent = `(${zoneLabel()})`;
  $("custom").hidden = f.range !== "custom";
}

// searchTerms splits a search into its terms at spaces outside double
// quotes, as the API does: a "phrase in quotes" is one term.
const searchTerms = (q) => q.match(/(?:[^\s"]+|"[^"]*"?)+/g) || [];

function readFilters() {
  const range = $("f-range").value;
  return {
    q: searchTerms($("f-action").value).join(" "),
    target_type: $("f-target").value,
    actor: $("f-actor").value.trim(),
    range,
    since: range === "custom" ? fromInput($("f-since").value) : "",
    until: range === "custom" ? fromInput($("f-until").value) : "",
  };
}

// toInput and fromInput convert between RFC 3339 and the value of a
// datetime-local input, which is read in the chosen zone: UTC, or the
// browser's (the input's own).
function toInput(rfc3339) {
  if (!rfc3339) return "";
  const d = new Date(rfc3339);
  if (isNaN(d)) return "";
  if (isUTC()) return d.toISOString().slice(0, 16);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
function fromInput(v) {
  if (!v) return "";
  const d = new Date(isUTC() ? v + "Z" : v);
  return isNaN(d) ? "" : d.toISOString();
}

// get fetches JSON from the API; a problem+json error becomes an Error with
// its status and the server's explanation, every invalid parameter named.
async function get(url) {
  const res = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!res.ok) {
    let detail = res.statusText;
    try {
      const p = await res.json();
      detail = p.invalid_params ? p.invalid_params.map((x) => `${x.name}: ${x.reason}`).join("; ") : (p.detail || p.title || detail);
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
  if (state !== "content") {
    showOrg(null); // nothing of another session stays
    clearTimeout(streamsTimer);
    $("streams").hidden = true;
    $("streams-list").textContent = "";
  }
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

// busy marks the results as being replaced: the form's button says so and
// the old results fade until the new ones arrive.
function busy(on) {
  const apply = $("apply");
  apply.disabled = on;
  apply.textContent = on ? "Loading…" : "Apply";
  $("results").setAttribute("aria-busy", String(on));
}

// load starts a new query from the filters in the URL.
async function load() {
  const f = filtersFromURL();
  showFilters(f);
  const q = query(f);
  current = q;
  const b = bounds(f);
  cursor = "";
  total = 0;
  const gen = ++generation;
  busy(true);
  setStatus("Loading…");
  const sq = new URLSearchParams(q);
  sq.set("tz", zone());
  sq.set("bucket", b.bucket);
  try {
    const [summary, page, linked] = await Promise.all([get(api(`/audit/summary?${sq}`)), fetchPage(q).then(async (p) => {
      await loadCatalog(); // the rows' sentences come from it; signed in by now
      return p;
    }), fetchLinked()]);
    if (gen !== generation) return;
    $("rows").textContent = "";
    show("content"); // first: a hidden linked event could not take the focus
    showLinked(linked);
    showSummary(summary, f, b);
    showPage(page);
    setExport(q, summary.total);
    if (f.warning) setStatus(f.warning, true);
    showCheckpoint();
    loadStreams();
  } catch (err) {
    if (gen !== generation) return;
    if (!handleAuthError(err)) {
      // Nothing of the previous view stays beside the error: no rows, no
      // chart, no count (the range and the chips say what was asked).
      $("rows").textContent = "";
      for (const id of ["log", "empty", "more"]) $(id).hidden = true;
      showSummary(null, f, b);
      setExport(q, 0);
      show("content");
      setStatus(`This view cannot be shown: ${err.message}`, true);
      loadStreams();
      loadCatalog(); // signed in all the same: the box's hints help mend the search
      get(api("/audit/summary?range=24h")).then((s) => showOrg(s.org), () => {});
    }
  } finally {
    if (gen === generation) busy(false);
  }
}

// fetchLinked fetches the event the page was opened on, if any: null when
// there is none, an Error when it cannot be read.
async function fetchLinked() {
  const id = linkedEvent();
  if (!id) return null;
  const at = new URLSearchParams(location.search).get("at");
  try {
    return await get(api(`/audit/events/${encodeURIComponent(id)}${at ? "?at=" + encodeURIComponent(at) : ""}`));
  } catch (err) {
    if (err.status === 401 || err.status === 403) throw err;
    return err;
  }
}

// showLinked shows the linked event open above the log, and moves there.
function showLinked(e) {
  const box = $("linked");
  $("linked-rows").textContent = "";
  box.hidden = !e;
  if (!e) return;
  if (e instanceof Error) {
    $("linked-rows").append(el("tr", {}, el("td", { class: "error" }, `This link's event cannot be shown: ${e.message}.`)));
  } else {
    const [row, details] = renderEvent(e, "linked-");
    $("linked-rows").append(row, details);
    row.querySelector("button.open").click();
  }
  box.scrollIntoView({ block: "start" });
  box.focus();
}

// eventLink is the address of the page opened on event e.
const eventLink = (e) => `${location.origin}${pagePath}/events/${encodeURIComponent(e.id)}?at=${encodeURIComponent(e.occurred_at)}`;

// fetchPage fetches the next page of the query.
function fetchPage(q) {
  const page = new URLSearchParams(q);
  page.set("limit", pageSize);
  if (cursor) page.set("cursor", cursor);
  return get(api(`/audit?${page}`));
}

// showPage appends a page's rows and says how many of the matching events
// are shown.
function showPage(body) {
  for (const e of body.events) $("rows").append(...renderEvent(e));
  cursor = body.next_cursor || "";
  $("more").hidden = !cursor;
  const n = $("rows").querySelectorAll("tr.event").length;
  $("empty").hidden = n > 0;
  $("log").hidden = n === 0;
  $("clear-empty").hidden = !hasFilters(filtersFromURL());
  const count = (k) => `${k.toLocaleString()} event${k === 1 ? "" : "s"}`;
  setStatus(n === 0 ? "" : cursor ? `Showing the newest ${n.toLocaleString()} of ${count(total)}.` : `Showing all ${count(n)}.`);
}

async function more() {
  if (loading || !cursor) return;
  loading = true;
  const gen = generation;
  setStatus("Loading more…");
  try {
    const body = await fetchPage(current);
    if (gen === generation) showPage(body);
  } catch (err) {
    if (!handleAuthError(err)) setStatus(err.message, true);
  } finally {
    loading = false;
  }
}

// setExport points the export links (CSV, NDJSON) at the current query, or
// disables them when there is nothing to export.
function setExport(q, n) {
  for (const [id, format] of [["export", "csv"], ["export-ndjson", "ndjson"]]) {
    const link = $(id);
    if (n > 0) {
      const e = new URLSearchParams(q);
      e.set("format", format);
      if (format === "csv") e.set("bom", "1"); // so that spreadsheets read accents right
      link.href = api(`/audit?${e}`);
      link.removeAttribute("aria-disabled");
    } else {
      link.removeAttribute("href");
      link.setAttribute("aria-disabled", "true");
    }
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

// isoInZone writes an instant as date and time in the chosen zone, to the
// millisecond, with the zone's name: what the details show.
function isoInZone(date) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-US", {
    timeZone: zone(), hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  }).formatToParts(date).map((p) => [p.type, p.value]));
  const ms = String(date.getUTCMilliseconds()).padStart(3, "0");
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second}.${ms} ${zoneLabel()}`;
}

// shown writes a metadata value in a sentence (as internal/sentence's show
// does): an object's keys, a list's items each shown so, joined by commas;
// null or missing is "".
const shown = (v) => v === null || v === undefined ? ""
  : Array.isArray(v) ? v.map(shown).join(", ") : typeof v === "object" ? Object.keys(v).join(", ") : String(v);

// hidden are the control and bidirectional formatting characters, which a
// sentence shows as U+FFFD: a value cannot reorder the sentence around it.
const hidden = /[\p{Cc}\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu;

// sentence writes event e as the catalog's sentence for its action says
// (audit.action_sentences): who acted in bold, then what they did, each
// value isolated (bdi) so right-to-left text stays inside it. Without one
// it is who acted and the action's code.
function sentence(e, actor) {
  const template = catalog.get(e.action)?.sentence || "{actor} {action}";
  const value = (key) => {
    if (key === "actor") return actor;
    if (key === "target") return shown(e.target_id);
    if (key === "action") return e.action;
    return shown(e.metadata ? e.metadata[key] : undefined);
  };
  const out = el("span", { class: "sentence" });
  let at = 0;
  for (const m of template.matchAll(/\{([a-z_|]+)\}/g)) {
    out.append(template.slice(at, m.index));
    const v = el("bdi", {}, (m[1].split("|").map(value).find((x) => x !== "") ?? "…").replace(hidden, "\ufffd"));
    out.append(m[1] === "actor" ? el("strong", {}, v) : v);
    at = m.index + m[0].length;
  }
  out.append(template.slice(at));
  return out;
}

// copyButton copies text to the clipboard, and says it did.
function copyButton(what, text) {
  const b = el("button", { type: "button", class: "copy", "aria-label": `Copy the ${what.toLowerCase()}` }, "Copy");
  b.addEventListener("click", async (ev) => {
    ev.stopPropagation();
    try {
      await navigator.clipboard.writeText(text);
      b.textContent = "Copied";
    } catch (_) {
      b.textContent = "Copy failed";
    }
    setTimeout(() => { b.textContent = "Copy"; }, 1500);
  });
  return b;
}

// targetNames are the target types as people say them.
const targetNames = { cluster: "Cluster", org: "Organization", org_member: "Member", org_invitation: "Invitation",
  pat: "Access token", billing: "Billing", auth: "Sign-in",
  audit_stream: "Stream" };

// renderEvent returns the event's row and its (hidden) details row, whose
// id starts with prefix.
function renderEvent(e, prefix = "ev-") {
  const at = new Date(e.occurred_at);
  const id = `${prefix}${e.id}`;
  const actor = e.actor_type === "system" ? "System" : (e.actor_email || e.actor_id || "Unknown user");
  const via = e.metadata && e.metadata.via_pat ? el("span", { class: "via", title: "Acted with a personal access token" }, `via token ${e.metadata.via_pat}`) : null;
  // The sentence is the button that opens the details (a row itself may not
  // be expanded); a click anywhere on the row does the same.
  const opener = el("button", { type: "button", class: "open", "aria-expanded": "false", "aria-controls": id }, sentence(e, actor));
  const row = el("tr", { class: "event" },
    el("td", { class: "event" }, opener,
      el("div", { class: "meta" }, el("code", { class: "action", title: catalog.get(e.action)?.description || "" }, e.action), via)),
    el("td", { class: "when" },
      el("time", { datetime: e.occurred_at, title: isoInZone(at) }, relative(at)),
      el("span", { class: "abs" }, fmtShort(at))),
    el("td", { class: "target" }, targetNames[e.target_type] || e.target_type,
      e.target_id ? el("div", { class: "muted id", title: e.target_id }, e.target_id) : null));

  const fields = [["Event id", e.id, true], ["Seq", e.seq ?? "Not sealed yet"], ["Time", isoInZone(at)], ["Action", `${e.action}${catalog.get(e.action) ? " — " + catalog.get(e.action).description : ""}`],
    ["Actor", actor, true], ["Actor type", e.actor_type], ["Actor id", e.actor_id], ["IP address", e.ip], ["User agent", e.user_agent],
    ["Request id", e.request_id, true], ["Target", `${e.target_type}${e.target_id ? " " + e.target_id : ""}`]];
  const dl = el("dl");
  for (const [k, v, copy] of fields) {
    if (v) dl.append(el("dt", {}, k), el("dd", {}, el("span", {}, String(v)), copy ? copyButton(k, String(v)) : null));
  }
  dl.append(el("dt", {}, "Link"), el("dd", {}, el("a", { href: eventLink(e) }, "Link to this event"), copyButton("Link", eventLink(e))));
  const metadata = JSON.stringify(e.metadata || {}, null, 2);
  const details = el("tr", { class: "details", id, hidden: "" },
    el("td", { colspan: "3" }, el("div", { class: "details" }, dl,
      el("div", { class: "metadata-head" }, el("span", {}, "Metadata"), copyButton("Metadata", metadata)),
      el("pre", { "aria-label": "Metadata", tabindex: "0" }, metadata))));

  const toggle = () => {
    const open = opener.getAttribute("aria-expanded") !== "true";
    opener.setAttribute("aria-expanded", String(open));
    row.classList.toggle("open", open);
    details.hidden = !open;
    if (open) details.scrollIntoView({ block: "nearest" });
  };
  row.addEventListener("click", (ev) => {
    if (!ev.target.closest("a") && (!window.getSelection() || window.getSelection().isCollapsed)) toggle();
  });
  return [row, details];
}

// showOrg names the org and its plan, or forgets them (null).
function showOrg(org) {
  $("org-name").textContent = org ? org.name : "Organization";
  document.title = org ? `Activity · ${org.name}` : "Activity · Organization settings";
  retentionDays = org ? org.retention_days : 365;
  if (!org) {
    $("retention").textContent = "Every change made in this organization, newest first.";
    return;
  }
  const plan = org.plan.charAt(0).toUpperCase() + org.plan.slice(1);
  $("retention").textContent = `Every change made in ${org.name}, newest first. The ${plan} plan keeps ${org.retention_days} days of activity.`;
  // Offer only the presets the plan keeps (and the one asked for).
  for (const opt of $("f-range").options) {
    const p = presets[opt.value];
    opt.hidden = opt.disabled = !!p && p.days > org.retention_days && opt.value !== $("f-range").value;
  }
}

// hasFilters says whether anything but the range narrows the log.
function hasFilters(f) {
  return !!(f.q || f.target_type || f.actor);
}

// showSummary says what the log shows (range, total, filters, the plan's
// limit) and charts it; s is null when the query failed.
function showSummary(s, f, b) {
  if (s) {
    total = s.total;
    showOrg(s.org);
  }
  const since = s ? new Date(s.since) : b.since;
  const until = s ? new Date(s.until) : (b.until || new Date());
  const label = f.range === "custom" ? "Custom range" : presets[f.range].label;
  const dates = since ? `${fmtDateTime(since)} – ${fmtDateTime(until)}` : `up to ${fmtDateTime(until)}`;
  $("range-words").textContent = `${label}: ${dates} ${zoneLabel()}`;
  $("total").textContent = s ? ` · ${s.total.toLocaleString()} event${s.total === 1 ? "" : "s"}` : "";
  // The plan cuts the range where it asks for more than the plan keeps (a
  // created: term that starts it later is no cut of the plan's).
  const keptSince = s && new Date(s.org.kept_since);
  const clipped = s && b.since && keptSince - b.since > 60000;
  $("plan-limit").hidden = !clipped;
  if (clipped) {
    const plan = s.org.plan.charAt(0).toUpperCase() + s.org.plan.slice(1);
    $("plan-limit").textContent = `The ${plan} plan keeps ${s.org.retention_days} days of activity: nothing before ${fmtDateTime(keptSince)} ${zoneLabel()} is shown.`;
  }
  showChips(f);
  $("chart-figure").hidden = !s; // no counts: no chart, rather than one of zeros
  drawChart(s ? s.days : [], s ? s.bucket : b.bucket);
}

// showChips lists the active filters, each search term and each other
// filter with a button that removes it.
function showChips(f) {
  const chips = $("chips");
  chips.textContent = "";
  const chip = (name, shown, without) => {
    const remove = el("button", { type: "button", class: "chip", "aria-label": `Remove the filter ${name}: ${shown}` },
      el("span", {}, `${name}: `), el("strong", {}, shown), el("span", { "aria-hidden": "true", class: "x" }, "×"));
    remove.addEventListener("click", async () => {
      // The chips are drawn anew: the focus goes to the one now in this
      // place, else to the search box (or the button that shows it).
      const i = [...chips.querySelectorAll("button.chip")].indexOf(remove);
      await navigate({ ...filtersFromURL(), ...without });
      const left = chips.querySelectorAll("button.chip");
      if (left.length) left[Math.min(i, left.length - 1)].focus();
      else focusSearch();
    });
    chips.append(el("li", {}, remove));
  };
  const terms = searchTerms(f.q);
  terms.forEach((term, i) => chip("Search", term, { q: terms.filter((_, j) => j !== i).join(" ") }));
  if (f.target_type) chip("Target type", $("f-target").selectedOptions[0]?.textContent || f.target_type, { target_type: "" });
  if (f.actor) chip("Actor", f.actor, { actor: "" });
  chips.hidden = !chips.firstChild;
  const n = chips.childElementCount;
  $("filters-toggle").textContent = n ? `Filters (${n})` : "Filters";
}

// The chart: an SVG of one bar per bucket with a y axis, a tooltip that
// follows the pointer, a tap, or the arrow keys, and a table of the same
// counts for screen readers.
const svgNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const e = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  e.append(...children);
  return e;
}
let chartData = { days: [], bucket: "day" };
let chartIndex = -1; // the bar the tooltip shows, -1 for none

// bucketLabel names a bucket as the tooltip and the table say it: its
// hour, its day, or the days of the week it counts (from its start to its
// end, which the range may cut: a week the range starts or ends in names
// only its days in the range).
function bucketLabel(b, bucket) {
  const d = new Date(b.start);
  if (bucket === "hour") return `${fmt(d, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" })} ${zoneLabel()}`;
  if (bucket === "week") {
    return new Intl.DateTimeFormat(undefined, { timeZone: zone(), month: "short", day: "numeric", year: "numeric" })
      .formatRange(d, new Date(new Date(b.end) - 1));
  }
  return fmt(d, { weekday: "short", month: "short", day: "numeric", year: "numeric" });
}

// niceMax rounds the largest count up to 1, 2 or 5 times a power of ten, so
// the axis's ticks are round numbers.
function niceMax(n) {
  if (n <= 4) return 4;
  const p = 10 ** Math.floor(Math.log10(n));
  return [1, 2, 5, 10].map((m) => m * p).find((m) => m >= n);
}

function drawChart(days, bucket) {
  chartData = { days, bucket };
  chartIndex = -1;
  const unit = bucket === "hour" ? "hour" : bucket === "week" ? "week" : "day";
  $("chart-caption").textContent = `Events per ${unit} (${zoneLabel()})`;
  const box = $("chart");
  box.textContent = "";
  $("chart-tip").hidden = true;
  $("chart-said").textContent = "";
  const width = Math.max(200, box.clientWidth), height = 128;
  const left = 44, right = 4, top = 8, bottom = 22;
  const plotW = width - left - right, plotH = height - top - bottom;
  const max = niceMax(Math.max(0, ...days.map((d) => d.count)));
  const chart = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, "aria-hidden": "true", focusable: "false" });
  for (const tick of [0, max / 2, max]) {
    const y = top + plotH - (tick / max) * plotH;
    chart.append(svg("line", { x1: left, x2: width - right, y1: y, y2: y, class: tick ? "grid" : "baseline" }),
      svg("text", { x: left - 6, y: y + 4, "text-anchor": "end", class: "tick" }, tick.toLocaleString()));
  }
  const step = plotW / Math.max(1, days.length);
  const gap = step > 6 ? Math.min(4, step * 0.2) : 0.5;
  days.forEach((d, i) => {
    const h = d.count ? Math.max(2, (d.count / max) * plotH) : 0;
    chart.append(svg("rect", { x: left + i * step + gap / 2, y: top + plotH - h, width: Math.max(1, step - gap), height: h,
      class: "bar", "data-i": i }));
  });
  if (days.length) {
    // The axis starts at the first bar's start and ends at the last bar's
    // hour, or its last day: today, not the Monday of this week.
    const label = (at, anchor) => svg("text", { x: anchor === "end" ? width - right : left, y: height - 6,
      "text-anchor": anchor, class: "tick" }, fmt(at, bucket === "hour"
      ? { hour: "2-digit", minute: "2-digit" } : { month: "short", day: "numeric" }));
    const last = days[days.length - 1];
    chart.append(label(new Date(days[0].start), "start"));
    if (days.length > 1) chart.append(label(bucket === "hour" ? new Date(last.start) : new Date(new Date(last.end) - 1), "end"));
  }
  box.append(chart);

  const table = $("chart-table");
  table.tBodies[0].textContent = "";
  table.caption.textContent = `Events per ${unit} (${zoneLabel()})`;
  for (const d of days) table.tBodies[0].append(el("tr", {}, el("td", {}, bucketLabel(d, bucket)), el("td", {}, String(d.count))));
  const sum = days.reduce((n, d) => n + d.count, 0);
  box.setAttribute("aria-label", `Chart of ${sum.toLocaleString()} events over ${days.length} ${unit}s: focus it and use the arrow keys to read each ${unit}`);
}

// pointChart shows bar i's count in the tooltip and highlights it.
function pointChart(i) {
  const { days, bucket } = chartData;
  const tip = $("chart-tip");
  for (const r of $("chart").querySelectorAll("rect.bar.on")) r.classList.remove("on");
  if (i < 0 || i >= days.length) {
    chartIndex = -1;
    tip.hidden = true;
    return;
  }
  chartIndex = i;
  const rect = $("chart").querySelector(`rect[data-i="${i}"]`);
  rect.classList.add("on");
  const d = days[i];
  tip.textContent = `${bucketLabel(d, bucket)}: ${d.count.toLocaleString()} event${d.count === 1 ? "" : "s"}`;
  tip.hidden = false;
  // A screen reader hears the bar the keys moved to (not every bar the
  // mouse crosses).
  if (document.activeElement === $("chart")) $("chart-said").textContent = tip.textContent;
  const x = Number(rect.getAttribute("x")) + Number(rect.getAttribute("width")) / 2;
  const room = $("chart").clientWidth;
  tip.style.left = `${Math.min(Math.max(0, x - tip.offsetWidth / 2), room - tip.offsetWidth)}px`;
}

// barAt is the index of the bar under a pointer event, -1 for none.
function barAt(ev) {
  const box = $("chart").getBoundingClientRect();
  const step = (box.width - 48) / Math.max(1, chartData.days.length);
  const i = Math.floor((ev.clientX - box.left - 44) / step);
  return i >= 0 && i < chartData.days.length ? i : -1;
}

function chartKeys(ev) {
  const n = chartData.days.length;
  const moves = { ArrowLeft: -1, ArrowRight: 1, Home: -n, End: n };
  if (!(ev.key in moves) || !n) return;
  ev.preventDefault();
  const from = chartIndex < 0 ? (moves[ev.key] < 0 ? n : -1) : chartIndex;
  pointChart(Math.min(n - 1, Math.max(0, from + moves[ev.key])));
}

// showCheckpoint states the org's latest signed checkpoint next to the
// export: how far an export of the log can be proven (docs/feed.md).
async function showCheckpoint() {
  const span = $("checkpoint");
  try {
    const cps = (await get(api("/audit/checkpoints"))).checkpoints;
    const c = cps[cps.length - 1];
    span.textContent = c ? `Latest signed checkpoint: seq ${c.seq}, ${fmtDateTime(new Date(c.signed_at))} ${zoneLabel()}` : "No signed checkpoint yet";
    span.title = c ? `Signed ${c.signed_at} with key ${c.key_id}; chain hash ${c.hash}` : "";
  } catch (_) {
    span.textContent = ""; // the log shows without it
  }
}

// The Streams panel: the org's subscriptions as the API lists them
// (docs/delivery.md), read-only. While it is open it is read again every
// 10 s, so deliveries show as they happen.
const streamsEvery = 10000;
let streamsTimer = 0;
let streamsGeneration = 0;
async function loadStreams() {
  clearTimeout(streamsTimer);
  const gen = ++streamsGeneration;
  let body;
  try {
    body = await get(api("/audit/streams"));
  } catch (_) {
    if (gen === streamsGeneration) $("streams").hidden = true; // the log shows without it
    return;
  }
  if (gen !== streamsGeneration || $("content").hidden) return;
  showStreams(body.streams);
  if ($("streams").open) streamsTimer = setTimeout(loadStreams, streamsEvery);
}

const plural = (n, word) => `${n.toLocaleString()} ${word}${n === 1 ? "" : "s"}`;
const kindNames = { webhook: "Webhook", slack: "Slack", splunk_hec: "Splunk HEC" };

// showStreams lists the subscriptions, keeping open the attempts the reader
// had opened; an org that streams nothing has no panel.
function showStreams(streams) {
  const list = $("streams-list");
  const open = new Set([...list.querySelectorAll("details[open]")].map((d) => d.dataset.id));
  const failing = streams.filter((s) => s.state === "failing").length;
  const lag = Math.max(0, ...streams.filter((s) => s.state === "active").map((s) => s.lag));
  $("streams-summary").textContent = [plural(streams.length, "subscription"),
    failing ? `${failing} failing` : "", lag ? `up to ${plural(lag, "event")} behind` : "up to date"].filter(Boolean).join(", ");
  list.textContent = "";
  for (const s of streams) list.append(renderStream(s, open.has(s.id)));
  $("streams").hidden = !streams.length;
}

// ruleWords says which events a subscription's rule keeps.
function ruleWords(s) {
  const parts = [["actions", s.actions], ["target types", s.target_types], ["actors", s.actor_emails]]
    .filter(([, list]) => list.length).map(([what, list]) => `${what} ${list.join(", ")}`);
  return parts.length ? `Events with ${parts.join("; ")}` : "Every event";
}

// renderStream is one subscription: its state, rule, destination host,
// lag, latest attempt, and its last attempts behind a disclosure.
function renderStream(s, attemptsOpen) {
  const state = s.state === "failing" && s.failing_since
    ? `Failing since ${fmtShort(new Date(s.failing_since))}` : s.state.charAt(0).toUpperCase() + s.state.slice(1);
  const lag = s.lag ? `${plural(s.lag, "event")} behind (delivered up to seq ${s.position})` : `Up to date (seq ${s.position})`;
  const dl = el("dl");
  for (const [k, v] of [["Rule", ruleWords(s)], ["Destination", `${kindNames[s.kind] || s.kind} to ${s.host}`], ["Lag", lag],
    ["Latest attempt", s.attempts.length ? `${relative(new Date(s.attempts[0].attempted_at))}: ${attemptWords(s.attempts[0])}` : "None yet"]]) {
    dl.append(el("dt", {}, k), el("dd", {}, v));
  }
  const item = el("li", { class: "stream", "data-state": s.state },
    el("div", { class: "stream-head" }, el("strong", {}, s.name), el("span", { class: `state ${s.state}` }, state)), dl);
  if (s.attempts.length) {
    const attempts = el("details", { "data-id": s.id }, el("summary", {}, s.attempts.length === 1 ? "The last attempt" : `Last ${s.attempts.length} attempts, newest first`),
      el("ol", { class: "attempts" }, ...s.attempts.map((a) => el("li", { class: a.error ? "failed" : "ok" },
        el("time", { datetime: a.attempted_at, title: isoInZone(new Date(a.attempted_at)) }, fmtShort(new Date(a.attempted_at))),
        ` ${attemptWords(a)}`))));
    attempts.open = attemptsOpen;
    item.append(attempts);
  }
  return item;
}

// attemptWords says how an attempt went: its answer, the seqs it covered,
// how long it took.
function attemptWords(a) {
  const seqs = !a.events ? "no events" : `${plural(a.events, "event")}, seq ${a.first_seq}${a.last_seq !== a.first_seq ? `–${a.last_seq}` : ""}`;
  const result = a.error ? `Failed${a.status ? ` (${a.status})` : ""}: ${a.error}` : `Delivered (${a.status})`;
  return `${result} · ${seqs} · ${a.latency_ms.toLocaleString()} ms`;
}

async function signIn(ev) {
  ev.preventDefault();
  $("sign-in-error").textContent = "";
  const button = $("sign-in-button");
  button.disabled = true;
  button.textContent = "Signing in…";
  try {
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
    await load();
  } catch (_) {
    $("sign-in-error").textContent = "The server did not answer; try again.";
  } finally {
    button.disabled = false;
    button.textContent = "Sign in";
  }
}

async function signOut() {
  await fetch("/api/session", { method: "DELETE", credentials: "same-origin" });
  show("sign-in");
}

// navigate shows the log for filters f, unless it already does; it ends
// once the log is shown.
function navigate(f) {
  const q = urlQuery(f);
  const url = `${pagePath}${q.size ? "?" + q : ""}`;
  if (url === location.pathname + location.search && !f.force) return;
  history.pushState(null, "", url);
  return load();
}

// catalog maps each action to its catalog entry (description, sentence).
// It is fetched once, after the API has let the visitor in (before sign-in
// it would only get a 401), and fills the action dropdown.
const catalog = new Map();
let catalogRequest = null;
function loadCatalog() {
  catalogRequest ??= get("/api/audit/actions").then((body) => {
    const list = $("action-list");
    for (const [hint, what] of [["action:", "actions matching, e.g. action:pat.*"], ["-action:", "leave actions out"],
      ["actor:", "one member's events"], ["target:", "a target type"], ["created:>=", "from a UTC day on, e.g. created:>=2026-11-01"]]) {
      list.append(el("option", { value: hint }, what));
    }
    for (const a of body.actions) {
      catalog.set(a.action, a);
      list.append(el("option", { value: a.action }, a.description || ""));
    }
  }, () => {
    catalogRequest = null; // try again with the next query; rows show the action's code meanwhile
  });
  return catalogRequest;
}

const clearAll = () => navigate({ q: "", target_type: "", actor: "", range: defaultRange });

// focusSearch focuses the search box, or on a phone, where the filters may
// be folded away, the button that shows them.
const focusSearch = () => ($("f-action").offsetParent ? $("f-action") : $("filters-toggle")).focus();

document.addEventListener("DOMContentLoaded", () => {
  $("f-tz").options[1].textContent = `Local (${localZone.split("/").pop().replace(/_/g, " ")})`;
  // Every filter applies as soon as it changes (a text box when you press
  // Enter or leave it); Apply does the same.
  $("filters").addEventListener("submit", (ev) => { ev.preventDefault(); navigate({ ...readFilters(), force: true }); });
  for (const id of ["f-action", "f-actor", "f-target"]) $(id).addEventListener("change", () => navigate(readFilters()));
  $("f-range").addEventListener("change", () => {
    const custom = $("f-range").value === "custom";
    $("custom").hidden = !custom;
    if (custom) $("f-since").focus();
    else navigate(readFilters());
  });
  $("f-tz").addEventListener("change", () => {
    // The URL's instants stay; the page shows them in the new zone.
    try { localStorage.setItem(zoneKey, $("f-tz").value); } catch (_) { /* private mode: nothing kept */ }
    load();
  });
  const chart = $("chart");
  chart.addEventListener("pointermove", (ev) => pointChart(barAt(ev)));
  chart.addEventListener("pointerdown", (ev) => pointChart(barAt(ev)));
  chart.addEventListener("pointerleave", (ev) => { if (ev.pointerType === "mouse") pointChart(-1); });
  chart.addEventListener("keydown", chartKeys);
  chart.addEventListener("focus", () => { if (chartIndex < 0) pointChart(chartData.days.length - 1); });
  chart.addEventListener("blur", () => pointChart(-1));
  let width = 0;
  new ResizeObserver(() => {
    if (chart.clientWidth !== width && !$("content").hidden) {
      width = chart.clientWidth;
      drawChart(chartData.days, chartData.bucket);
    }
  }).observe(chart);
  $("filters-toggle").addEventListener("click", () => {
    const open = !$("filters").classList.contains("open");
    $("filters").classList.toggle("open", open);
    $("filters-toggle").setAttribute("aria-expanded", String(open));
  });
  $("clear").addEventListener("click", clearAll);
  $("clear-empty").addEventListener("click", async () => {
    await clearAll();
    focusSearch(); // the button went with the empty state
  });
  $("export").addEventListener("click", (ev) => { if (!$("export").href) ev.preventDefault(); });
  $("more").addEventListener("click", more);
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  $("streams").addEventListener("toggle", () => { if ($("streams").open) loadStreams(); });
  window.addEventListener("popstate", load);
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) more();
  }, { rootMargin: "200px" }).observe($("more"));
  load();
});
