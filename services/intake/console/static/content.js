// Pānui coordinator console: creating an incident and editing its notice content, with the
// Privacy Act 2020 s 117 checklist (S117 and checklist() in console.js) ticking as it is filled.
"use strict";

// The incident's notice content, with the s 117 checklist ticking as it is filled in: a new
// incident (no `incident`), or an edit of `incident` made from its revision (the service
// refuses it, 409, if someone else's edit came first). Fields the form does not show (te reo
// templates, never-ask list, ...) are kept as they are.
function contentForm(incident) {
  const editing = !!incident;
  const was = editing ? incident.content : {};
  const f = (name, label, kind = "input", extra = {}) => [h("label", { for: `f-${name}` }, label),
    h(kind, { id: `f-${name}`, name, ...extra })];
  const box = h("div", {});
  const form = h("form", { id: editing ? "edit" : "create" },
    editing ? null : h("div", { class: "row" }, h("div", {}, f("incident_id", "Incident id", "input", { required: true, pattern: "[A-Za-z0-9._-]+" })),
      h("div", {}, f("title", "Title", "input", { required: true }))),
    editing ? f("title", "Title", "input", { required: true }) : null,
    f("sender_name", "Sender (who is notifying)"),
    f("breach_description", "What happened", "textarea", { rows: 3 }),
    f("suspected_holder_statement", "Who may hold the information", "textarea", { rows: 2 }),
    f("steps_taken", "Steps taken", "textarea", { rows: 2 }),
    f("mitigation_advice", "What the person can do (one per line)", "textarea", { rows: 3 }),
    h("label", { class: "inline" }, h("input", { type: "checkbox", name: "privacy_commissioner_notified", id: "f-pc" }),
      "Privacy Commissioner notified"),
    h("div", { class: "row" }, h("div", {}, f("contact_organisation", "Contact organisation")),
      h("div", {}, f("contact_phone", "Contact phone"))),
    f("contact_web_address", "Contact web address (typed, not a link)"),
    editing ? null : f("agencies", "Expected agencies (one per line: id, name)", "textarea", { rows: 3 }),
    editing ? null : h("label", { class: "inline" }, h("input", { type: "checkbox", name: "dry_run", id: "f-dry-run" }),
      "Dry run: a rehearsal — notices go only to the local simulated gateways, marked DRY RUN (cannot be changed later)"),
    h("h2", {}, "s 117 checklist"), box,
    h("p", {}, h("button", { type: "submit", id: editing ? "save-edit" : "create-incident" }, editing ? "Save (new revision)" : "Create incident")));
  const el = form.elements;
  if (editing) {
    el.title.value = incident.title;
    for (const n of ["sender_name", "breach_description", "suspected_holder_statement", "steps_taken"]) el[n].value = was[n] || "";
    el.mitigation_advice.value = (was.mitigation_advice || []).join("\n");
    el.privacy_commissioner_notified.checked = !!was.privacy_commissioner_notified;
    el.contact_organisation.value = was.contact.organisation;
    el.contact_phone.value = was.contact.phone;
    el.contact_web_address.value = was.contact.web_address;
  }
  const content = () => {
    const v = (n) => (el[n].value || "").trim();
    return {
      ...was,
      sender_name: v("sender_name"), breach_description: v("breach_description"),
      suspected_holder_statement: v("suspected_holder_statement"), steps_taken: v("steps_taken"),
      mitigation_advice: v("mitigation_advice").split("\n").map((s) => s.trim()).filter(Boolean),
      privacy_commissioner_notified: el.privacy_commissioner_notified.checked,
      complaint_right: was.complaint_right || "You can complain to the Privacy Commissioner.",
      contact: { ...(was.contact || {}), organisation: v("contact_organisation"), phone: v("contact_phone"), web_address: v("contact_web_address") },
    };
  };
  const refresh = () => box.replaceChildren(checklist(content()));
  form.addEventListener("input", refresh);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const c = content();
    if (!editing) delete c.complaint_right;  // the service's default wording
    try {
      if (editing) {
        await api("PUT", `/v1/incidents/${enc(incident.incident_id)}/content`,
          { revision: incident.revision, title: el.title.value.trim(), content: c });
        fail("");
        location.hash = `#/incident/${enc(incident.incident_id)}`;
        return;
      }
      const agencies = el.agencies.value.split("\n").map((l) => l.trim()).filter(Boolean).map((l) => {
        const [id, ...name] = l.split(",");
        return { agency_id: id.trim(), name: (name.join(",") || id).trim() };
      });
      const made = await api("POST", "/v1/incidents", {
        incident_id: el.incident_id.value.trim(), title: el.title.value.trim(),
        content: c, expected_agencies: agencies, dry_run: el.dry_run.checked,
      });
      keysDialog(made);
    } catch (err) { fail(`${editing ? "Not saved" : "Not created"}: ${err.message}`); }
  });
  refresh();
  return h("section", { class: "card" }, h("h2", {}, editing ? `Edit ${incident.incident_id} (revision ${incident.revision})` : "Create an incident"), form);
}

async function editPage(id) {
  const incident = await api("GET", `/v1/incidents/${enc(id)}`);
  show(h("h1", {}, `Edit — ${incident.title}`),
    h("p", {}, h("a", { href: `#/incident/${enc(id)}` }, "← back to the incident"), " ",
      h("span", { class: "muted" }, "Notices sent from now on use the new revision.")),
    contentForm(incident));
}

function keysDialog(made) {
  const rows = made.issued_keys.map((k) => h("tr", {}, h("td", {}, k.agency_id), h("td", {}, h("code", {}, k.api_key))));
  show(h("h1", {}, `Incident ${made.incident_id} created`),
    h("section", { class: "card" }, h("p", {}, "Each agency's API key is shown once; give it to the agency now."),
      h("table", {}, h("tbody", {}, rows)),
      h("p", {}, h("a", { class: "button", href: `#/incident/${enc(made.incident_id)}` }, "Open the incident"))));
}
