// Pānui coordinator console: the Privacy Commissioner's report for one incident — intake's,
// dedupe's and dispatch's counts combined by intake (/v1/incidents/{id}/commissioner-report,
// the same function as `panui report`): the whole incident, a table of every agency's counts,
// the dated milestones, and downloads as CSV and as the PDF to send. Counts only: no personal data.
"use strict";

// Two services may count under one name (persons.notified: dedupe's released, dispatch's
// received), so a row is a measure as counted by one service.
function reportCounts(report) {
  const rowKey = (c) => `${c.measure}|${c.service || ""}`;
  const incident = report.counts.filter((c) => c.agency_id === null);
  const agencies = [...new Set(report.counts.filter((c) => c.agency_id !== null).map((c) => c.agency_id))].sort();
  const rows = {};  // measure|service -> { measure, service, values: agency -> value }
  for (const c of report.counts) {
    if (c.agency_id === null) continue;
    (rows[rowKey(c)] ||= { measure: c.measure, service: c.service, values: {} }).values[c.agency_id] = c.value;
  }
  return { incident, agencies, rows: Object.keys(rows).sort().map((k) => rows[k]) };
}

async function reportPage(id) {
  const incident = await api("GET", `/v1/incidents/${enc(id)}`);
  const report = await api("GET", `/v1/incidents/${enc(id)}/commissioner-report`);
  const { incident: totals, agencies, rows } = reportCounts(report);
  const fmt = (n) => Number(n).toLocaleString("en-NZ");
  const save = (format) => download(`/v1/incidents/${enc(id)}/commissioner-report.${format}`, `${id}-commissioner-report.${format}`)
    .then(() => fail("")).catch((e) => fail(`Not downloaded: ${e.message}`));
  show(h("h1", {}, `Privacy Commissioner's report — ${incident.title}`),
    h("p", {}, h("a", { href: `#/incident/${enc(id)}` }, "← back to the incident"), " ",
      h("button", { id: "report-pdf", onclick: () => save("pdf") }, "Download PDF (to send)"), " ",
      h("button", { id: "report-csv", class: "secondary", onclick: () => save("csv") }, "Download CSV")),
    h("p", { class: "muted", id: "report-generated" },
      `Counts and dates only, no personal data. Generated ${new Date(report.generated_at).toLocaleString()} from ${report.services.join(", ")}.`),
    h("section", { class: "card" }, h("h2", {}, "The whole incident"),
      h("table", { id: "report-incident" }, h("thead", {}, h("tr", {}, h("th", {}, "Measure"), h("th", {}, "Counted by"), h("th", { class: "num" }, "Value"))),
        h("tbody", {}, totals.map((c) => h("tr", { "data-measure": c.measure, "data-service": c.service }, h("td", {}, c.measure),
          h("td", { class: "muted" }, c.service), h("td", { class: "num", "data-value": c.value }, fmt(c.value))))))),
    h("section", { class: "card" }, h("h2", {}, `Each agency (${agencies.length})`),
      agencies.length ? h("div", { style: "overflow-x:auto" }, h("table", { id: "report-agencies" },
        h("thead", {}, h("tr", {}, h("th", {}, "Measure"), h("th", {}, "Counted by"), agencies.map((a) => h("th", { class: "num", "data-agency": a }, a)))),
        h("tbody", {}, rows.map((r) => h("tr", { "data-measure": r.measure, "data-service": r.service }, h("td", {}, r.measure), h("td", { class: "muted" }, r.service),
          agencies.map((a) => { const v = r.values[a]; return h("td", { class: "num", "data-agency": a, "data-value": v ?? "" }, v === undefined ? "–" : fmt(v)); }))))))
        : h("p", { class: "muted" }, "No agency has sent records yet.")),
    h("section", { class: "card" }, h("h2", {}, "Milestones"),
      h("table", { id: "report-milestones" }, h("thead", {}, h("tr", {}, h("th", {}, "When"), h("th", {}, "Milestone"), h("th", {}, "Agency"))),
        h("tbody", {}, report.milestones.map((m) => h("tr", { "data-milestone": m.milestone },
          h("td", {}, new Date(m.at).toLocaleString()), h("td", {}, m.milestone), h("td", {}, m.agency_id || "")))))));
}
