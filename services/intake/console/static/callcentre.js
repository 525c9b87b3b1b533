// Pānui console: the call centre's page (the 0800 line; a call-centre or coordinator token).
// The operator enters the reference the caller reads out and their date of birth — or says
// which detail they verified instead — and sees exactly what the person was sent (dispatch
// renders each channel again from the sealed notice and the revision the delivery is pinned to),
// when and on which channel, the delivery history, the notice's versions (amendments), whether
// they are held under s 116 (first, with what not to say) or unreachable, and the scripted answers. Every lookup is in dispatch's audit log; what
// is shown is kept nowhere but this page's elements, and the date of birth is cleared after.
// Also: how the public "is this genuine?" check works, to explain it to callers.
"use strict";

const VERIFIED = [["date-of-birth", "Date of birth"], ["name-and-address", "Name and address"],
  ["email", "Email address"], ["mobile", "Mobile number"]];

function checkExplainer(content) {
  const typed = content && content.contact ? content.contact.web_address : null;
  // A link for staff (notices never carry one); only an http(s) address becomes one.
  let url = null;
  try { url = typed ? new URL(/^[a-z][a-z0-9+.-]*:/i.test(typed) ? typed : "https:" + "//" + typed) : null; } catch { url = null; }
  if (url && url.protocol !== "https:" && url.protocol !== "http:") url = null;
  return h("section", { class: "card", id: "check-explainer" }, h("h2", {}, "“Is this notice genuine?” — the public check"),
    h("p", {}, "Every notice tells people to type ", typed ? h("b", { id: "check-address" }, typed) : "the incident's web address",
      " into their browser (the notices never link to it, so a look-alike message cannot either). There they enter the reference ",
      "from their notice and their date of birth; a match shows the incident, the agencies, the kinds of information involved and ",
      "the contact line — nothing else. A wrong date and an unknown reference get the same answer, and tries are limited."),
    h("p", {}, "Tell callers to type the address themselves. ",
      url ? h("a", { href: url.href, id: "check-link", target: "_blank", rel: "noopener noreferrer" }, "Open the check page") : ""));
}

function lookupResult(r) {
  const table = (id, head, rows) => h("table", { id }, h("thead", {}, h("tr", {}, head.map((t) => h("th", {}, t)))), h("tbody", {}, rows));
  const when = (iso) => new Date(iso).toLocaleString();
  return h("div", { id: "lookup-result", "data-notice": r.notice_id },
    // First, before anything the operator might read out: a person held under s 116 is held so
    // that they are not told; the page says what not to say, never why (dispatch is not told).
    r.held ? h("section", { class: "card held-warning", id: "lookup-held", role: "alert" },
      h("h2", { class: "cross" }, "Held under s 116 — do not disclose"), h("p", {}, r.held_guidance)) : "",
    h("section", { class: "card" }, h("h2", {}, `Notice ${r.reference}`),
      h("p", {}, `Version ${r.version} · language ${r.preferred_language}`, r.has_representative ? " · sent to a representative" : "",
        " · ", r.unreachable ? h("b", { class: "cross", id: "lookup-unreachable" }, "unreachable: on the public-notice list")
          : h("span", { class: "tick", id: "lookup-reachable" }, "reached by at least one channel")),
      h("h3", {}, "Agencies and the kinds of information they held"),
      h("ul", { id: "lookup-agencies" }, r.agencies.map((a) => h("li", {}, h("b", {}, a.name), `: ${a.data_categories.join(", ")}`)))),
    h("section", { class: "card" }, h("h2", {}, "What was sent"),
      r.sent.length ? r.sent.map((s) => h("div", { class: "sent", "data-channel": s.channel },
        h("h3", {}, `${s.channel} (content revision ${s.revision})`),
        s.subject ? h("p", {}, "Subject: ", h("b", {}, s.subject)) : "",
        s.problem ? h("p", { class: "cross" }, `Could not be rendered again: ${s.problem}`) : "",
        h("pre", { class: "notice-text", id: `lookup-sent-${s.channel}` }, s.text)))
        : h("p", { class: "muted" }, "Nothing sent yet.")),
    h("section", { class: "card" }, h("h2", {}, "Deliveries"),
      table("lookup-deliveries", ["Channel", "Status", "Attempts", "Provider", "Reason", "Last change"],
        r.deliveries.map((d) => h("tr", { "data-channel": d.channel, "data-status": d.status }, h("td", {}, d.channel), h("td", {}, d.status),
          h("td", { class: "num" }, d.attempts), h("td", {}, d.provider || ""), h("td", {}, d.reason_code || ""), h("td", {}, when(d.updated_at))))),
      h("h3", {}, "History"),
      table("lookup-history", ["When", "Channel", "Status", "Attempt", "Provider", "Reason"],
        r.history.map((e) => h("tr", { "data-channel": e.channel, "data-status": e.status }, h("td", {}, when(e.at)), h("td", {}, e.channel),
          h("td", {}, e.status), h("td", { class: "num" }, e.attempt), h("td", {}, e.provider || ""), h("td", {}, e.reason_code || ""))))),
    h("section", { class: "card" }, h("h2", {}, "Versions (amendments)"),
      table("lookup-versions", ["Version", "Reference", "Received"],
        r.versions.map((v) => h("tr", { "data-version": v.version }, h("td", { class: "num" }, v.version), h("td", {}, v.reference || "—"), h("td", {}, when(v.received_at)))))));
}

function scriptedAnswers(answers) {
  return h("section", { class: "card", id: "scripted-answers" }, h("h2", {}, "Scripted answers"),
    h("p", { class: "muted" }, "Read them as written."),
    answers.map((a) => h("details", { "data-answer": a.id }, h("summary", {}, a.question), h("p", {}, a.answer))));
}

async function callCentrePage(incidentId) {
  const answers = (await api("GET", dispatch("/call-centre/answers"))).answers;
  const incident = incidentId ? await api("GET", `/v1/incidents/${enc(incidentId)}`).catch(() => null) : null;
  const incidentInput = h("input", { id: "cc-incident", required: true, value: incidentId || "", placeholder: "incident id" });
  const reference = h("input", { id: "cc-reference", required: true, placeholder: "PAN-XXXX-XXXX-XXXX", autocomplete: "off" });
  const how = h("select", { id: "cc-verified" }, VERIFIED.map(([v, label]) => h("option", { value: v }, label)));
  const dob = h("input", { id: "cc-dob", type: "date", autocomplete: "off" });
  const dobRow = h("div", {}, h("label", { for: "cc-dob" }, "Caller's date of birth"), dob);
  how.addEventListener("change", () => { dobRow.hidden = how.value !== "date-of-birth"; dob.required = !dobRow.hidden; });
  dob.required = true;
  const box = h("div", { id: "lookup-box" });
  const explainer = h("div", {}, checkExplainer(incident && incident.content));
  const form = h("form", { id: "cc-form", onsubmit: async (e) => {
    e.preventDefault();
    const id = incidentInput.value.trim();
    const body = { reference: reference.value.trim() };
    if (how.value === "date-of-birth") body.date_of_birth = dob.value; else body.verified_detail = how.value;
    dob.value = "";  // not kept on the page once asked
    // The incident's own check address (any staff role may read the incident's content).
    api("GET", `/v1/incidents/${enc(id)}`).then((i) => explainer.replaceChildren(checkExplainer(i.content))).catch(() => {});
    try {
      const found = await api("POST", dispatch(`/incidents/${enc(id)}/notice-lookups`), body);
      fail("");
      box.replaceChildren(lookupResult(found));
    } catch (err) {
      if (err.status === 404 || err.status === 422) {
        fail("");
        box.replaceChildren(h("section", { class: "card", id: "lookup-none" }, h("p", {}, h("b", {}, "No notice found."),
          " No notice of this incident has that reference with that date of birth (or the reference is mistyped). ",
          "Ask the caller to read the reference again, character by character.")));
      } else fail(`Lookup failed: ${err.message}`);
    }
  } },
  h("div", { class: "row" },
    h("div", {}, h("label", { for: "cc-incident" }, "Incident"), incidentInput),
    h("div", {}, h("label", { for: "cc-reference" }, "Reference the caller reads out"), reference)),
  h("div", { class: "row" }, h("div", {}, h("label", { for: "cc-verified" }, "Verified by"), how), dobRow),
  h("p", {}, h("button", { type: "submit", id: "cc-lookup" }, "Look up (recorded in the audit log)")));
  show(h("h1", {}, "Call centre — find a notice", incident ? ` (${incident.title})` : ""),
    h("section", { class: "card" }, form), box,
    explainer,
    scriptedAnswers(answers));
  (incidentId ? reference : incidentInput).focus();
}
