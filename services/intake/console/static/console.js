// Pānui coordinator console. Plain JavaScript, no library, nothing fetched from elsewhere.
// Every call carries the coordinator's bearer token (kept in this tab's sessionStorage only).
// Intake answers its own API and /v1/ops/lag; dedupe and dispatch are reached through intake's
// pass-through /v1/console/{dedupe|dispatch}/v1/... (same origin, no CORS).
"use strict";

const TOKEN_KEY = "panui.coordinator.token";
const ROLE_KEY = "panui.console.role";  // "coordinator" or "call-centre": which pages to show
const POLL_MS = 5000;
const STATUSES = ["queued", "sending", "sent", "delivered", "temporary-failure",
  "permanent-failure", "technical-failure", "unreachable", "superseded",
  "not-needed"];
const COLOURS = { persons: "#0b3d59", notified: "#1b7f3b", delivered: "#2e86de", failed: "#b3261e" };
// Privacy Act 2020 s 117: what every notice must say, checked against the incident's content.
const S117 = [
  ["Who is notifying (sender)", (c) => !!c.sender_name],
  ["What happened (the breach)", (c) => !!c.breach_description],
  ["Who is suspected to hold the information", (c) => !!c.suspected_holder_statement],
  ["Steps taken in response", (c) => !!c.steps_taken],
  ["What the person can do (mitigation advice)", (c) => (c.mitigation_advice || []).length > 0],
  ["Privacy Commissioner notified", (c) => !!c.privacy_commissioner_notified],
  ["Right to complain to the Privacy Commissioner", (c) => !!c.complaint_right],
  ["Contact point (organisation, phone, web address)",
    (c) => !!(c.contact && c.contact.organisation && c.contact.phone && c.contact.web_address)],
];

let timer = null;          // the current page's poll
let keyHandler = null;     // the current page's keyboard shortcuts

// --- tiny DOM helper: text is always set as text (never HTML) --------------------------------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const main = () => document.getElementById("main");
function show(...nodes) { main().replaceChildren(...nodes); }
function fail(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = !message;
}

// --- API -----------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}
function token() { return sessionStorage.getItem(TOKEN_KEY); }
async function api(method, path, body, { loggingIn = false } = {}) {
  const headers = { authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 401 && !loggingIn) { logout(); throw new ApiError(401, "auth.invalid", "Log in again."); }
  const type = res.headers.get("content-type") || "";
  if (!res.ok) {
    let code = `http.${res.status}`, message = res.statusText;
    if (type.includes("json")) {
      const err = (await res.json()).error || {};
      code = err.code || code; message = err.message || message;
    }
    throw new ApiError(res.status, code, message);
  }
  if (type.includes("json")) return res.json();
  return res.blob();
}
const dedupe = (path) => `/v1/console/dedupe/v1${path}`;
const dispatch = (path) => `/v1/console/dispatch/v1${path}`;
const enc = encodeURIComponent;

// --- pages ---------------------------------------------------------------------------------
function loginPage() {
  document.getElementById("nav").hidden = true;
  const input = h("input", { id: "token", type: "password", autocomplete: "current-password", required: true });
  const form = h("form", {
    id: "login", onsubmit: async (e) => {
      e.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      try {
        sessionStorage.setItem(ROLE_KEY, await roleOf());
        fail("");
        const home = role() === "call-centre" ? "#/call-centre" : "#/incidents";
        if (location.hash === home) route(); else location.hash = home;  // hashchange routes
      } catch (err) { sessionStorage.removeItem(TOKEN_KEY); fail(`Not logged in: ${err.message}`); }
    },
  }, h("label", { for: "token" }, "Coordinator or call-centre token"), input, h("p", {}, h("button", { type: "submit" }, "Log in")));
  show(h("h1", {}, "Log in"), h("section", { class: "card" },
    h("p", { class: "muted" }, "The token stays in this browser tab only."), form));
  input.focus();
}

// A coordinator lists incidents; a call-centre token may not, but reads the scripted answers.
async function roleOf() {
  try {
    await api("GET", "/v1/incidents?limit=1", undefined, { loggingIn: true });
    return "coordinator";
  } catch (err) {
    if (err.status !== 403) throw err;
    await api("GET", dispatch("/call-centre/answers"), undefined, { loggingIn: true });
    return "call-centre";
  }
}
function role() { return sessionStorage.getItem(ROLE_KEY) || "coordinator"; }

function checklist(content) {
  return h("ul", { class: "checklist", id: "s117" }, S117.map(([label, ok]) => {
    const yes = ok(content || {});
    return h("li", { class: yes ? "tick" : "cross", "data-mark": yes ? "✓" : "✗", "data-ok": String(yes) }, label);
  }));
}

async function incidentsPage() {
  const list = await api("GET", "/v1/incidents");
  const rows = list.map((i) => h("tr", { "data-incident": i.incident_id },
    h("td", {}, h("a", { href: `#/incident/${enc(i.incident_id)}` }, i.incident_id), i.dry_run ? [" ", dryRunBadge()] : null),
    h("td", {}, i.title), h("td", { class: "num" }, i.revision),
    h("td", { class: "num" }, `${i.agencies_complete} / ${i.agencies}`),
    h("td", {}, new Date(i.created_at).toLocaleString())));
  show(h("h1", {}, "Incidents"),
    h("section", { class: "card" }, h("table", { id: "incidents" },
      h("thead", {}, h("tr", {}, h("th", {}, "Incident"), h("th", {}, "Title"), h("th", { class: "num" }, "Revision"),
        h("th", { class: "num" }, "Agencies complete"), h("th", {}, "Created"))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No incidents yet."))))),
    contentForm());
}

function dryRunBadge() {
  return h("span", { class: "badge dry-run", title: "A rehearsal: notices go only to the local simulated gateways" }, "DRY RUN");
}

function stat(label, value, id) {
  return h("div", { class: "stat", id }, h("b", {}, value), h("span", {}, label));
}

function lagTable(lag) {
  return h("table", { id: "lag" }, h("thead", {}, h("tr", {}, h("th", {}, "Consumer group"), h("th", {}, "Status"),
    h("th", { class: "num" }, "Total lag"), h("th", {}, "Why"))),
  h("tbody", {}, lag.groups.map((g) => h("tr", { "data-group": g.group },
    h("td", {}, g.group), h("td", { class: g.status }, g.status),
    h("td", { class: "num", "data-lag": g.totallag }, g.totallag), h("td", { class: "muted" }, g.reason)))));
}

function totalsByStatus(summary) {
  const totals = {};
  for (const statuses of Object.values(summary.by_channel)) {
    for (const [s, n] of Object.entries(statuses)) totals[s] = (totals[s] || 0) + n;
  }
  return totals;
}

async function download(path, filename) {
  const blob = await api("GET", path);
  const a = h("a", { href: URL.createObjectURL(blob), download: filename });
  document.body.append(a); a.click(); a.remove();
}

async function incidentPage(id) {
  const incident = await api("GET", `/v1/incidents/${enc(id)}`);
  const history = [];
  const statsBox = h("div", { class: "stats", id: "stats" });
  const agenciesBox = h("div", {});
  const deliveriesBox = h("div", {});
  const lagBox = h("div", {});
  const progressChart = h("canvas", { id: "progress-chart" });
  const statusChart = h("canvas", { id: "status-chart" });
  const releaseButton = h("button", { id: "release", class: "danger", onclick: () => confirmRelease(id) }, "Release now…");
  const updated = h("span", { class: "muted", id: "updated" });
  show(
    h("h1", {}, `${incident.title} `, h("span", { class: "muted" }, `(${incident.incident_id}, revision ${incident.revision})`),
      incident.dry_run ? [" ", dryRunBadge()] : null),
    h("p", {}, h("a", { class: "button", href: `#/incident/${enc(id)}/reviews`, id: "open-reviews" }, "Review queue"), " ",
      h("a", { class: "button", href: `#/incident/${enc(id)}/preview`, id: "open-preview" }, "Notice preview"), " ",
      h("a", { class: "button", href: `#/incident/${enc(id)}/report`, id: "open-report" }, "Commissioner's report"), " ",
      h("a", { class: "button secondary", href: `#/call-centre/${enc(id)}`, id: "open-call-centre" }, "Call-centre lookup"), " ",
      h("a", { class: "button", href: `#/incident/${enc(id)}/retractions`, id: "open-retractions" }, "Retractions"), " ",
      h("a", { class: "button", href: `#/incident/${enc(id)}/reconciliation`, id: "open-reconciliation" }, "Agency reconciliation"), " ",
      h("a", { class: "button secondary", href: `#/incident/${enc(id)}/edit`, id: "open-edit" }, "Edit content"), " ",
      h("button", { class: "secondary", id: "unreachable-csv", onclick: () => download(dispatch(`/incidents/${enc(id)}/unreachable.csv`), `${id}-unreachable.csv`).catch((e) => fail(e.message)) }, "Download unreachable (CSV)"), " ",
      releaseButton, " ", updated),
    statsBox,
    h("div", { class: "grid" },
      h("section", { class: "card" }, h("h2", {}, "Progress over time"),
        h("div", { class: "legend" }, ["persons", "notified", "delivered", "failed"].map((s) => h("span", {}, h("i", { style: `background:${COLOURS[s]}` }), s))),
        progressChart),
      h("section", { class: "card" }, h("h2", {}, "Deliveries by status"), statusChart)),
    h("div", { class: "grid" },
      h("section", { class: "card" }, h("h2", {}, "Agencies"), agenciesBox),
      h("section", { class: "card" }, h("h2", {}, "s 117 checklist"), checklist(incident.content))),
    h("section", { class: "card" }, h("h2", {}, "Notices by channel and status"), deliveriesBox),
    h("section", { class: "card" }, h("h2", {}, "Consumer lag"), lagBox));

  async function poll() {
    const [progress, summary, lag] = await Promise.allSettled([
      api("GET", dedupe(`/incidents/${enc(id)}/progress`)),
      api("GET", dispatch(`/incidents/${enc(id)}/deliveries/summary`)),
      api("GET", "/v1/ops/lag")]);
    const p = progress.status === "fulfilled" ? progress.value : null;
    const s = summary.status === "fulfilled" ? summary.value : { notices: 0, by_channel: {} };
    const totals = totalsByStatus(s);
    const failed = (totals["permanent-failure"] || 0) + (totals["technical-failure"] || 0) + (totals["temporary-failure"] || 0);
    statsBox.replaceChildren(
      stat("persons", p ? p.persons : "–", "stat-persons"),
      stat("held (pending release)", p ? p.pending_release : "–", "stat-pending"),
      stat("notified", p ? p.notified : "–", "stat-notified"),
      stat("on hold", p ? p.on_hold : "–", "stat-on-hold"),
      stat("in review", p ? p.in_review : "–", "stat-in-review"),
      stat("retractions to decide", p ? p.retractions : "–", "stat-retractions"),
      stat("notices at dispatch", s.notices, "stat-notices"),
      stat("sent (no receipt yet)", totals.sent || 0, "stat-sent"),
      stat("delivered", totals.delivered || 0, "stat-delivered"),
      stat("failed", failed, "stat-failed"),
      stat("unreachable", totals.unreachable || 0, "stat-unreachable"),
      stat("released", p && p.released_at ? `yes (${p.release_reason})` : "not yet", "stat-released"));
    releaseButton.disabled = !!(p && p.released_at);
    if (p) {
      agenciesBox.replaceChildren(h("table", { id: "agencies" },
        h("thead", {}, h("tr", {}, h("th", {}, "Agency"), h("th", {}, "Expected"), h("th", { class: "num" }, "Records"),
          h("th", { class: "num" }, "Missing"), h("th", {}, "Complete"))),
        h("tbody", {}, p.agencies.map((a) => h("tr", { "data-agency": a.agency_id }, h("td", {}, a.name, " ", h("span", { class: "muted" }, a.agency_id)),
          h("td", {}, a.expected ? "yes" : "no"), h("td", { class: "num", "data-records": a.records }, a.records),
          h("td", { class: "num" }, a.missing), h("td", { class: a.complete ? "tick" : "cross" }, a.complete ? "✓ complete" : "✗ not yet"))))));
    } else {
      agenciesBox.replaceChildren(h("p", { class: "muted" }, `Dedupe: ${progress.reason.message}`));
    }
    const channels = Object.keys(s.by_channel).sort();
    deliveriesBox.replaceChildren(channels.length ? h("table", { id: "deliveries" },
      h("thead", {}, h("tr", {}, h("th", {}, "Channel"), STATUSES.map((st) => h("th", { class: "num" }, st)))),
      h("tbody", {}, channels.map((c) => h("tr", { "data-channel": c }, h("td", {}, c),
        STATUSES.map((st) => h("td", { class: "num", "data-status": st }, s.by_channel[c][st] || 0))))))
      : h("p", { class: "muted" }, summary.status === "fulfilled" ? "No deliveries yet." : `Dispatch: ${summary.reason.message}`));
    lagBox.replaceChildren(lag.status === "fulfilled" ? lagTable(lag.value) : h("p", { class: "muted" }, `Lag: ${lag.reason.message}`));
    history.push({ persons: p ? p.persons : 0, notified: p ? p.notified : 0, delivered: totals.delivered || 0, failed });
    if (history.length > 120) history.shift();
    lineChart(progressChart, ["persons", "notified", "delivered", "failed"], history);
    barChart(statusChart, totals);
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
  }
  await poll();
  timer = setInterval(() => poll().catch((e) => fail(e.message)), POLL_MS);
}

function confirmRelease(id) {
  const dialog = h("dialog", { id: "release-dialog" },
    h("p", {}, h("b", {}, "Release this incident's notices now?")),
    h("p", {}, "Notices go out before every expected agency is complete or the hold deadline has passed. This cannot be undone."),
    h("p", {}, h("button", { class: "danger", id: "release-confirm", onclick: async () => {
      dialog.close(); dialog.remove();
      try { await api("POST", dedupe(`/incidents/${enc(id)}/release`)); fail(""); } catch (e) { fail(`Not released: ${e.message}`); }
    } }, "Release now"), " ", h("button", { class: "secondary", onclick: () => { dialog.close(); dialog.remove(); } }, "Cancel")));
  document.body.append(dialog);
  dialog.showModal();
}

function classify(part) {
  if (part.level === null || part.level === undefined || /missing|null|absent/i.test(String(part.level))) return "missing";
  return part.weight > 0 ? "agree" : part.weight < 0 ? "disagree" : "missing";
}

async function reviewsPage(id) {
  const open = await api("GET", dedupe(`/incidents/${enc(id)}/reviews?status=open`));
  // This page decides pairs; contact and hold conflicts (issue 18) take other decisions, and
  // retractions (issue 16) have a page of their own.
  let items = open.filter((i) => (i.kind || "pair") === "pair");
  const conflicts = open.filter((i) => i.kind === "contact_conflict" || i.kind === "hold_conflict").length;
  let at = 0;
  let revealed = null;  // the current pair's values, once revealed
  const box = h("div", {});
  const counter = h("span", { id: "review-count" });
  show(h("h1", {}, `Review queue — ${id}`),
    h("p", {}, h("a", { href: `#/incident/${enc(id)}` }, "← back to the incident"), " ", counter),
    h("p", { class: "muted" }, "Keys: ", h("kbd", {}, "m"), " merge · ", h("kbd", {}, "a"), " keep apart · ",
      h("kbd", {}, "j"), "/", h("kbd", {}, "k"), " next/previous · ", h("kbd", {}, "r"), " reveal/mask. Values are masked: the evidence shows how each field compares; a reveal shows this pair's values and is recorded in the audit log."),
    conflicts ? h("p", { id: "review-conflicts" }, `${conflicts} contact or hold conflict(s) open: decide them through dedupe's review API (use_contact / keep_fallback, release / keep_held).`) : "",
    box);

  async function reveal() {
    const item = items[at];
    if (!item) return;
    try {
      revealed = await api("POST", dedupe(`/incidents/${enc(id)}/reviews/${enc(item.review_id)}/reveal`));
      fail("");
      render();
    } catch (e) { fail(`Not revealed: ${e.message}`); }
  }

  async function decide(decision) {
    const item = items[at];
    if (!item) return;
    try {
      await api("POST", dedupe(`/incidents/${enc(id)}/reviews/${enc(item.review_id)}/decision`), { decision });
      items.splice(at, 1);
      if (at >= items.length) at = Math.max(0, items.length - 1);
      fail("");
      render();
    } catch (e) { fail(`Not decided: ${e.message}`); }
  }

  function render() {
    counter.textContent = items.length ? `${at + 1} of ${items.length} open` : "0 open";
    const item = items[at];
    if (revealed && (!item || revealed.review_id !== item.review_id)) revealed = null;  // moved on: masked
    if (!item) { box.replaceChildren(h("section", { class: "card", id: "review-empty" }, "No open review items.")); return; }
    const ev = item.evidence || {};
    const parts = ev.comparisons || [];
    // Masked by default; a reveal (audited by dedupe) shows this pair's values until the
    // reviewer moves on: they are kept nowhere but in this page's elements.
    const shown = revealed && revealed.review_id === item.review_id ? revealed : null;
    const side = (label, key, which) => h("section", { class: "card", id: `side-${which}` }, h("h2", {}, label),
      h("p", {}, "Agency ", h("b", {}, key[0])), h("p", {}, "Record ", h("code", {}, key[1])),
      shown ? h("table", { class: "revealed" }, h("tbody", {}, Object.entries(shown[which].values).map(([field, value]) =>
        h("tr", { "data-field": field }, h("th", {}, field), h("td", { class: value === null ? "muted" : "" }, value === null ? "—" : value)))))
        : h("table", {}, h("tbody", {}, parts.map((p) => h("tr", {}, h("th", {}, p.field),
          h("td", { class: "masked" }, "••••••"))))));
    box.replaceChildren(h("div", { id: "review", "data-review": item.review_id },
      h("div", { class: "side" }, side("Record A", item.a, "a"), side("Record B", item.b, "b")),
      h("section", { class: "card" }, h("h2", {}, "How the resolver compared them"),
        h("p", {}, `Reason: ${item.reason}. Total weight `, h("b", { id: "review-weight" }, ev.weight === undefined ? "–" : Number(ev.weight).toFixed(2)),
          ` (review from ${ev.review_threshold ?? "–"}, match from ${ev.match_threshold ?? "–"})`, ev.reason ? ` — ${ev.reason}` : ""),
        h("table", { id: "comparisons" }, h("thead", {}, h("tr", {}, h("th", {}, "Field"), h("th", {}, "Compared"), h("th", {}, "Level"), h("th", { class: "num" }, "Weight"))),
          h("tbody", {}, parts.map((p) => { const c = classify(p); return h("tr", { "data-field": p.field, "data-compared": c },
            h("td", {}, p.field), h("td", { class: c }, c), h("td", {}, String(p.level)), h("td", { class: "num" }, Number(p.weight).toFixed(2))); })))),
      h("p", {}, h("button", { id: "merge", onclick: () => decide("merge") }, "Merge (m)"), " ",
        h("button", { id: "keep-apart", class: "secondary", onclick: () => decide("keep_apart") }, "Keep apart (a)"), " ",
        shown ? h("button", { id: "mask", class: "secondary", onclick: () => { revealed = null; render(); } }, "Mask again (r)")
          : h("button", { id: "reveal", class: "secondary", onclick: reveal }, "Reveal values (r, recorded in the audit log)"))));
  }
  keyHandler = (e) => {
    if (e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement) return;
    if (e.key === "m") decide("merge");
    else if (e.key === "a") decide("keep_apart");
    else if (e.key === "r") { if (revealed) { revealed = null; render(); } else reveal(); }
    else if (e.key === "j" || e.key === "ArrowDown") { at = Math.min(at + 1, Math.max(items.length - 1, 0)); render(); }
    else if (e.key === "k" || e.key === "ArrowUp") { at = Math.max(at - 1, 0); render(); }
  };
  document.addEventListener("keydown", keyHandler);
  render();
}

async function opsPage() {
  const box = h("div", {});
  show(h("h1", {}, "Consumer lag"), h("p", { class: "muted" }, "From Kafka's committed and log end offsets, judged as Burrow does."), box);
  async function poll() {
    const lag = await api("GET", "/v1/ops/lag");
    box.replaceChildren(h("p", {}, "Worst: ", h("b", { class: lag.status }, lag.status), ` at ${new Date(lag.sampled_at).toLocaleTimeString()}`), lagTable(lag));
  }
  await poll();
  timer = setInterval(() => poll().catch((e) => fail(e.message)), POLL_MS);
}

function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(ROLE_KEY);
  location.hash = "#/login";
}

async function route() {
  clearInterval(timer); timer = null;
  if (keyHandler) { document.removeEventListener("keydown", keyHandler); keyHandler = null; }
  const hash = location.hash.replace(/^#\/?/, "");
  if (!token()) { loginPage(); return; }
  document.getElementById("nav").hidden = false;
  for (const link of document.querySelectorAll("#nav [data-coordinator]")) link.hidden = role() !== "coordinator";
  const parts = hash.split("/").map(decodeURIComponent);
  try {
    if (parts[0] === "call-centre") { await callCentrePage(parts[1]); return; }
    if (parts[0] === "login") { loginPage(); return; }
    if (role() === "call-centre") { location.hash = "#/call-centre"; return; }  // its only page
    if (parts[0] === "incident" && parts[1] && parts[2] === "reviews") await reviewsPage(parts[1]);
    else if (parts[0] === "incident" && parts[1] && parts[2] === "retractions") await retractionsPage(parts[1]);
    else if (parts[0] === "incident" && parts[1] && parts[2] === "edit") await editPage(parts[1]);
    else if (parts[0] === "incident" && parts[1] && parts[2] === "report") await reportPage(parts[1]);
    else if (parts[0] === "incident" && parts[1] && parts[2] === "reconciliation" && parts[3]) await reconciliationRecordsPage(parts[1], parts[3]);
    else if (parts[0] === "incident" && parts[1] && parts[2] === "reconciliation") await reconciliationPage(parts[1]);
    else if (parts[0] === "incident" && parts[1] && parts[2] === "preview") await previewPage(parts[1], parts[3]);
    else if (parts[0] === "incident" && parts[1]) await incidentPage(parts[1]);
    else if (parts[0] === "ops") await opsPage();
    else await incidentsPage();
  } catch (err) { fail(err.message); }
}

document.getElementById("logout").addEventListener("click", logout);
window.addEventListener("hashchange", route);
route();
