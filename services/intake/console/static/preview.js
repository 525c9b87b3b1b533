// Pānui coordinator console: the notice preview, for sign-off before release — the email (its
// HTML in a sandboxed frame: no script, no same-origin access; and its text) and the SMS with
// its segment count, in English or te reo Māori, for the synthetic sample person (dispatch's
// notice-preview) or for any stored notice by its id or the code printed on it (audited by
// dispatch: it shows a person's name and contacts). The te reo templates previewed can be
// approved here (intake's templates-mi/approval, with the fingerprint of exactly these).
"use strict";

function noticeView(p, { sample }) {
  const frame = h("iframe", { id: "preview-email-html", sandbox: "", title: "The email as HTML", referrerpolicy: "no-referrer" });
  frame.srcdoc = p.email_html || "";  // a property: the HTML is never parsed into this page
  return h("div", { id: "preview", "data-language": p.language },
    h("section", { class: "card" }, h("h2", {}, "Email"),
      p.email_subject === null ? h("p", { class: "muted", id: "preview-no-email" }, "No email address: no email.") : [
        h("p", {}, "Subject: ", h("b", { id: "preview-email-subject" }, p.email_subject)),
        h("div", { class: "grid" },
          h("div", {}, h("h3", {}, "As HTML"), frame),
          h("div", {}, h("h3", {}, "As text"), h("pre", { id: "preview-email-text", class: "notice-text" }, p.email_text)))]),
    h("section", { class: "card" }, h("h2", {}, "SMS"),
      p.sms === null ? h("p", { class: "muted", id: "preview-no-sms" }, "No mobile number: no SMS.") : [
        h("pre", { id: "preview-sms", class: "notice-text sms" }, p.sms),
        h("p", {}, h("b", { id: "preview-sms-segments", "data-segments": p.sms_segments }, `${p.sms_segments} segment${p.sms_segments === 1 ? "" : "s"}`),
          ` (${p.sms_encoding}${sample ? "" : ", as sent"})`)]),
    h("details", { class: "card" }, h("summary", {}, "Letter text"), h("pre", { class: "notice-text", id: "preview-letter" }, p.letter_text)));
}

async function previewPage(id, reference) {
  const incident = await api("GET", `/v1/incidents/${enc(id)}`);
  let language = reference ? null : "en";  // a person's notice: in their own language first
  const body = h("div", {});
  const approval = h("div", { id: "templates-mi" });
  const refInput = h("input", { id: "preview-reference", placeholder: "PAN-XXXX-XXXX or notice id", pattern: "[A-Za-z0-9._:-]+", value: reference || "" });
  const langButtons = [["en", "English"], ["mi", "Te reo Māori"]].map(([code, label]) =>
    h("button", { type: "button", class: "secondary", "data-language": code, id: `preview-lang-${code}`,
      onclick: () => { language = code; load().catch((e) => fail(e.message)); } }, label));
  const heading = h("h2", { id: "preview-who" });
  show(h("h1", {}, `Notice preview — ${incident.title}`, incident.dry_run ? [" ", dryRunBadge()] : null),
    h("p", {}, h("a", { href: `#/incident/${enc(id)}` }, "← back to the incident")),
    h("section", { class: "card" },
      h("p", {}, "Language: ", langButtons),
      h("form", { id: "preview-by-reference", onsubmit: (e) => {
        e.preventDefault();
        const ref = refInput.value.trim();
        location.hash = ref ? `#/incident/${enc(id)}/preview/${enc(ref)}` : `#/incident/${enc(id)}/preview`;
      } }, h("label", { for: "preview-reference" }, "A person's notice, by the code printed on it (viewing it is recorded in the audit log)"),
      h("div", { class: "row" }, h("div", {}, refInput), h("div", {}, h("button", { type: "submit" }, "Show"), " ",
        h("a", { href: `#/incident/${enc(id)}/preview`, class: "button secondary" }, "Sample person"))))),
    approval, heading, body);

  let latest = 0;  // a slower earlier answer never replaces a later one
  async function load() {
    const mine = ++latest;
    for (const b of langButtons) b.setAttribute("aria-pressed", String(b.dataset.language === language));
    if (reference) {
      const p = await api("GET", dispatch(`/incidents/${enc(id)}/notices/${enc(reference)}/preview${language ? `?language=${language}` : ""}`));
      if (mine !== latest) return;
      heading.textContent = `Notice ${p.notice_id} (version ${p.version}, incident revision ${p.incident_revision}) — ${p.sent ? "as it was sent" : "as it would be sent now"}`;
      approval.replaceChildren();
      body.replaceChildren(noticeView(p, { sample: false }));
    } else {
      const p = await api("GET", dispatch(`/incidents/${enc(id)}/notice-preview?language=${language}`));
      if (mine !== latest) return;
      heading.textContent = "For a synthetic sample person (Aroha Tauira)";
      approval.replaceChildren(templatesApproval(id, p));
      body.replaceChildren(noticeView(p, { sample: true }));
    }
    fail("");
  }
  await load();
}

function templatesApproval(id, p) {
  if (p.language !== "mi") return h("span", {});
  if (!p.templates_mi_fingerprint) {
    return h("section", { class: "card" }, h("p", { id: "templates-mi-status", "data-status": "none" },
      "No te reo templates: te reo readers get the bundled wrapper (it says most of the notice is in English)."));
  }
  if (p.templates_mi_approved) {
    return h("section", { class: "card" }, h("p", { id: "templates-mi-status", "data-status": "approved", class: "tick", "data-mark": "✓" },
      "These te reo templates are approved: te reo readers get them."));
  }
  return h("section", { class: "card" },
    h("p", { id: "templates-mi-status", "data-status": "unapproved", class: "cross", "data-mark": "✗" },
      "These te reo templates are not approved: until they are, te reo readers get the bundled wrapper."),
    h("p", {}, h("button", { id: "approve-templates-mi", onclick: async () => {
      try {
        const after = await api("POST", `/v1/incidents/${enc(id)}/templates-mi/approval`, { fingerprint: p.templates_mi_fingerprint });
        fail("");
        // Intake has it now (a new revision); dispatch uses them once that revision reaches it.
        const ok = after.content.templates_mi_approved === p.templates_mi_fingerprint;
        document.getElementById("templates-mi").replaceChildren(h("section", { class: "card" },
          h("p", { id: "templates-mi-status", "data-status": ok ? "approved" : "unapproved", class: ok ? "tick" : "cross", "data-mark": ok ? "✓" : "✗" },
            ok ? `Approved (incident revision ${after.revision}).` : "Not approved.")));
      } catch (e) { fail(`Not approved: ${e.message}`); }
    } }, "Approve exactly these te reo templates")));
}
