// Pānui coordinator console: agency reconciliation (issue 16) — what became of each agency's
// records, as the agency itself sees it (`panui feed status`): counts per agency by outcome,
// merged with other agencies' records, and notified by channel and delivery status; one
// agency's rows by its own source_record_id, a page at a time; and the agency's CSV. Intake
// computes them (/v1/incidents/{id}/agencies/{agency}/reconciliation…, coordinator only).
// Record ids, outcomes and notice references only: no personal data.
"use strict";

const OUTCOMES = ["rejected", "withdrawn", "received", "pending", "in_review", "held", "notified", "unreachable"];
const RECON_PAGE = 50;

const reconPath = (id, agency) => `/v1/incidents/${enc(id)}/agencies/${enc(agency)}/reconciliation`;

function saveReconciliationCsv(id, agency) {
  return download(`${reconPath(id, agency)}.csv`, `${id}-${agency}-status.csv`)
    .then(() => fail("")).catch((e) => fail(`Not downloaded: ${e.message}`));
}

async function reconciliationPage(id) {
  const incident = await api("GET", `/v1/incidents/${enc(id)}`);
  const fmt = (n) => Number(n).toLocaleString("en-NZ");
  const body = h("tbody", {});
  const deliveries = h("div", { id: "recon-deliveries" });
  show(h("h1", {}, `Agency reconciliation — ${incident.title}`),
    h("p", {}, h("a", { href: `#/incident/${enc(id)}` }, "← back to the incident")),
    h("p", { class: "muted" }, "What became of each agency's records, as the agency sees it in its own download: counts by outcome, keyed by the agency's own record ids. No personal data; no agency is named to another."),
    h("section", { class: "card" }, h("h2", {}, "Each agency"),
      h("div", { style: "overflow-x:auto" }, h("table", { id: "recon-agencies" },
        h("thead", {}, h("tr", {}, h("th", {}, "Agency"), h("th", { class: "num" }, "Records"),
          OUTCOMES.map((o) => h("th", { class: "num" }, o.replace("_", " "))),
          h("th", { class: "num" }, "Merged with other agencies"), h("th", {}, ""))),
        body))),
    h("section", { class: "card" }, h("h2", {}, "Notified records by channel and delivery status"), deliveries));
  const summaries = await Promise.all(incident.agencies.map(async (a) => {
    try { return await api("GET", reconPath(id, a.agency_id)); } catch (e) { return { agency_id: a.agency_id, error: e.message }; }
  }));
  for (const [i, a] of incident.agencies.entries()) {
    const s = summaries[i];
    const cells = s.error ? [h("td", { colspan: OUTCOMES.length + 2, class: "muted" }, s.error)]
      : [h("td", { class: "num", "data-count": "records" }, fmt(s.records)),
        OUTCOMES.map((o) => h("td", { class: "num", "data-count": o }, fmt(s.outcomes[o] || 0))),
        h("td", { class: "num", "data-count": "merged" }, fmt(s.merged_with_other_agencies))].flat();
    body.append(h("tr", { "data-agency": a.agency_id }, h("td", {}, a.name, " ", h("span", { class: "muted" }, `(${a.agency_id})`)), cells,
      h("td", {}, h("a", { href: `#/incident/${enc(id)}/reconciliation/${enc(a.agency_id)}`, class: "recon-records" }, "Records"), " ",
        h("button", { class: "secondary recon-csv", onclick: () => saveReconciliationCsv(id, a.agency_id) }, "CSV"))));
  }
  const rows = summaries.filter((s) => !s.error).flatMap((s) => s.deliveries.map((d) => ({ agency: s.agency_id, ...d })));
  deliveries.replaceChildren(rows.length ? h("table", {},
    h("thead", {}, h("tr", {}, h("th", {}, "Agency"), h("th", {}, "Channel"), h("th", {}, "Status"), h("th", { class: "num" }, "Records"))),
    h("tbody", {}, rows.map((d) => h("tr", { "data-agency": d.agency, "data-channel": d.channel, "data-status": d.status },
      h("td", {}, d.agency), h("td", {}, d.channel), h("td", {}, d.status), h("td", { class: "num", "data-value": d.records }, fmt(d.records))))))
    : h("p", { class: "muted" }, "No notice has been sent yet."));
}

async function reconciliationRecordsPage(id, agency) {
  const body = h("tbody", {});
  const more = h("button", { id: "recon-more", class: "secondary", style: "display:none" }, "Next records");
  const counter = h("span", { class: "muted", id: "recon-shown" });
  show(h("h1", {}, `Reconciliation — ${agency}`),
    h("p", {}, h("a", { href: `#/incident/${enc(id)}/reconciliation` }, "← every agency"), " ",
      h("button", { id: "recon-csv", class: "secondary", onclick: () => saveReconciliationCsv(id, agency) }, "Download CSV (as the agency gets it)")),
    h("p", { class: "muted" }, "One row per record, by the agency's own record id, in the order of its download."),
    h("section", { class: "card" }, h("div", { style: "overflow-x:auto" }, h("table", { id: "recon-records" },
      h("thead", {}, h("tr", {}, ["Record id", "Outcome", "Version", "Notice reference", "Channels", "Delivery status", "Merged with", "Detail"].map((t) => h("th", {}, t)))),
      body)), h("p", {}, more, " ", counter)));
  let after = "";
  let shown = 0;
  async function next() {
    const page = await api("GET", `${reconPath(id, agency)}/records?limit=${RECON_PAGE}&after=${enc(after)}`);
    for (const r of page.rows) {
      body.append(h("tr", { "data-record": r.source_record_id, "data-outcome": r.outcome },
        h("td", {}, h("code", {}, r.source_record_id)), h("td", { class: "outcome" }, r.outcome.replace("_", " ")),
        h("td", { class: "num" }, r.record_version ?? ""), h("td", { class: "reference" }, r.notice_reference || ""),
        h("td", { class: "channels" }, r.channels.join(", ")), h("td", { class: "delivery" }, r.delivery_status.join(", ")),
        h("td", { class: "num" }, r.merged_with_other_agencies ? `${r.merged_with_other_agencies} other agenc${r.merged_with_other_agencies === 1 ? "y" : "ies"}` : ""),
        h("td", { class: "muted" }, r.detail)));
    }
    shown += page.rows.length;
    counter.textContent = `${shown} record${shown === 1 ? "" : "s"} shown${page.next_after ? "; more to come" : ""}.`;
    after = page.next_after;
    more.style.display = after ? "" : "none";  // buttons are inline-block: `hidden` would not hide
  }
  more.addEventListener("click", () => next().catch((e) => fail(e.message)));
  await next();
}
