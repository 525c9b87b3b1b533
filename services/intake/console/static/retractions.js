// Pānui coordinator console: retractions (issue 16). Records an agency withdrew after the
// person's notice told them about them: the notice was sent in error, or named an agency
// wrongly. The coordinator decides once — a correction notice to the person, or no action —
// through dedupe's review API (coordinator only; the decision is in dedupe's audit log). The
// page shows agencies and record ids only, never a person's details.
"use strict";

const RETRACTION_REASONS = {
  all_withdrawn: "Sent in error: every record the notice was about was withdrawn",
  agency_withdrawn: "An agency named wrongly: all its records the notice was about were withdrawn",
};

async function retractionsPage(id) {
  const box = h("div", {});
  show(h("h1", {}, `Retractions — ${id}`),
    h("p", {}, h("a", { href: `#/incident/${enc(id)}` }, "← back to the incident")),
    h("p", { class: "muted" }, "A correction notice goes to whoever the earlier notice was built for, on its channels, and says what was wrong; it cannot be unsent. Each retraction is decided once."),
    box);

  async function decide(item, decision) {
    try {
      await api("POST", dedupe(`/incidents/${enc(id)}/reviews/${enc(item.review_id)}/decision`), { decision });
      fail("");
      last = null;
      await load();
    } catch (e) { fail(`Not decided: ${e.message}`); }
  }

  function confirmCorrection(item) {
    const dialog = h("dialog", { id: "correction-dialog" },
      h("p", {}, h("b", {}, "Send a correction notice?")),
      h("p", {}, item.reason === "all_withdrawn"
        ? "The person is told the earlier notice was sent to them by mistake."
        : `The person is told ${item.evidence.withdrawn_agencies.join(", ")} was not involved; the rest of the earlier notice stands.`),
      h("p", {}, h("button", { class: "danger", id: "correction-confirm", onclick: async () => {
        dialog.close(); dialog.remove(); await decide(item, "send_correction");
      } }, "Send correction notice"), " ",
      h("button", { class: "secondary", onclick: () => { dialog.close(); dialog.remove(); } }, "Cancel")));
    document.body.append(dialog);
    dialog.showModal();
  }

  function card(item) {
    const ev = item.evidence || {};
    const open = item.status === "open";
    const outcome = item.status === "send_correction"
      ? ["Decided: correction notice ", item.correction_notice_id
        ? h("a", { href: `#/incident/${enc(id)}/preview/${enc(item.correction_notice_id)}`, class: "correction-notice" }, item.correction_notice_id)
        : h("span", { class: "muted" }, "(being made)")]
      : item.status === "no_action" ? ["Decided: no action"] : [`Status: ${item.status}`];
    return h("section", { class: "card retraction", "data-review": item.review_id, "data-status": item.status },
      h("h2", {}, RETRACTION_REASONS[item.reason] || item.reason),
      h("p", {}, "Notice ", h("code", {}, ev.notice_person_id || "–")),
      h("table", {}, h("tbody", {},
        h("tr", {}, h("th", {}, "Withdrawn"), h("td", { class: "withdrawn" }, (ev.withdrawn_agencies || []).join(", "))),
        h("tr", {}, h("th", {}, "Still standing"), h("td", { class: "standing" }, (ev.standing_agencies || []).join(", ") || "none")),
        h("tr", {}, h("th", {}, "Records"), h("td", {}, (ev.withdrawn_records || []).map((r) => `${r.agency_id}/${r.source_record_id}`).join(", "))))),
      open ? h("p", {},
        h("button", { class: "send-correction", onclick: () => confirmCorrection(item) }, "Send correction notice…"), " ",
        h("button", { class: "secondary no-action", onclick: () => decide(item, "no_action") }, "No action"))
        : h("p", { class: "outcome" }, ...outcome, item.decided_at ? ` (${new Date(item.decided_at).toLocaleString()})` : ""));
  }

  let last = null;  // what is shown: the page is redrawn only when it changes
  async function load() {
    const all = await api("GET", dedupe(`/incidents/${enc(id)}/reviews?status=all`));
    const seen = JSON.stringify(all);
    if (seen === last) return;
    last = seen;
    const items = all.filter((i) => i.kind === "retraction" && i.status !== "resolved")
      .sort((a, b) => (a.status === "open" ? 0 : 1) - (b.status === "open" ? 0 : 1));
    box.replaceChildren(items.length ? h("div", { id: "retractions" }, items.map(card))
      : h("section", { class: "card", id: "retractions-empty" }, "No retractions."));
  }
  await load();
  timer = setInterval(() => load().catch((e) => fail(e.message)), POLL_MS);
}
