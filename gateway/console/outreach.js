"use strict";
// Outreach review: risks found in usage with their evidence, the drafts written
// for them, and the human decision (approve, edit, reject) before anything is sent.

startPage(async (main) => {
  const findingsById = new Map();
  const findingsBox = h("div", { id: "findings" });
  const draftsBox = h("div", { id: "drafts" });
  const stateSelect = h("select", { "aria-label": "Draft state" },
    ["pending_review", "approved", "rejected", "sent"].map((v) => h("option", { value: v }, v.replace("_", " "))));
  const error = h("p", { class: "error", role: "alert" });
  const detect = h("button", { type: "button", class: "secondary" }, "Detect risks now");
  clear(main,
    h("div", { class: "row" }, h("h1", {}, "Outreach review"), detect),
    error,
    h("div", { class: "cols2" },
      h("section", {}, h("h2", {}, "Findings"), findingsBox),
      h("section", {}, h("div", { class: "row" }, h("h2", {}, "Drafts"), stateSelect), draftsBox)));
  stateSelect.addEventListener("change", loadDrafts);

  // The statement is written for people (rounded, with units); before/after are for programs.
  function evidenceTable(evidence) {
    if (!evidence?.length) return h("p", { class: "muted" }, "No evidence recorded.");
    return h("table", { class: "evidence" },
      h("thead", {}, h("tr", {}, h("th", {}, "Evidence"))),
      h("tbody", {}, evidence.map((e) => h("tr", {}, h("td", {}, e.statement)))));
  }

  function renderFinding(f) {
    const draftButton = h("button", { type: "button" }, "Draft messages");
    const note = h("p", { class: "muted" });
    draftButton.addEventListener("click", async () => {
      draftButton.disabled = true;
      try {
        const reply = await api("POST", tenantPath(`/outreach/findings/${encodeURIComponent(f.finding_id)}/drafts`));
        note.textContent = `${reply.drafts.length} draft(s) written` + (reply.skipped.length
          ? `; skipped ${reply.skipped.map((x) => `${x.account_id} (${x.reason.replace(/_/g, " ")})`).join(", ")}` : "") + ".";
        stateSelect.value = "pending_review";
        await loadDrafts();
      } catch (e) { note.textContent = describeError(e); note.className = "error"; } finally { draftButton.disabled = false; }
    });
    return h("div", { class: "card finding" },
      h("div", { class: "row" }, h("strong", {}, f.kind.replace(/_/g, " ")),
        h("span", { class: `badge ${f.severity >= 0.7 ? "bad" : "warn"}` }, `severity ${f.severity.toFixed(2)}`),
        h("span", { class: "muted" }, f.account_ids.join(", "))),
      f.cause ? h("p", {}, f.cause) : null,
      evidenceTable(f.evidence),
      f.suggested_fix ? h("p", {}, h("strong", {}, "Fix: "), f.suggested_fix) : null,
      citationList(f.sources),
      h("div", { class: "row" }, draftButton), note);
  }

  async function runDetection() {
    detect.disabled = true;
    try {
      const { findings } = await api("POST", tenantPath("/outreach/detect"), {});
      findings.forEach((f) => findingsById.set(f.finding_id, f));
      clear(findingsBox, ...(findings.length ? findings.map(renderFinding) : [h("p", { class: "card muted" }, "No risks found: nothing to send.")]));
      await loadDrafts();
    } catch (e) { error.textContent = describeError(e); } finally { detect.disabled = false; }
  }
  detect.addEventListener("click", runDetection);

  // Who gets it: one account, or each account of a cross-customer incident (the
  // greeting is personalised per recipient when it is sent).
  function recipients(d) {
    const ids = d.recipient_account_ids || [];
    if (ids.length <= 1) return ids[0] || d.account_id || "(no recipient)";
    const shown = ids.slice(0, 3).join(", ");
    return `${ids.length} accounts (${shown}${ids.length > 3 ? ", …" : ""}), each greeted by name`;
  }

  function renderDraft(d) {
    const body = h("textarea", { "aria-label": `Body of ${d.subject}` });
    body.value = d.body;
    const status = h("p", { class: "muted", role: "status" });
    const pending = d.state === "pending_review";
    body.disabled = !pending;
    const review = (action) => async (event) => {
      event.target.disabled = true;
      try {
        const edited = body.value.trim();
        const payload = action === "edit" ? { action, edited_body: edited } : { action };
        const reviewed = await api("POST", tenantPath(`/outreach/drafts/${encodeURIComponent(d.draft_id)}/review`), payload);
        card.replaceWith(renderDraft(reviewed));
      } catch (e) { status.textContent = describeError(e); status.className = "error"; event.target.disabled = false; }
    };
    const finding = findingsById.get(d.finding_id);
    const card = h("div", { class: "card draft", "data-id": d.draft_id },
      h("div", { class: "row" }, h("strong", {}, d.subject), h("span", { class: "badge" }, d.state.replace("_", " ")),
        d.generator ? h("span", { class: "badge" }, d.generator) : null),
      h("p", { class: "muted" }, `to ${recipients(d)} · ${when(d.created_at)}${d.reviewer_id ? ` · reviewed by ${d.reviewer_id}` : ""}`),
      body,
      pending ? h("div", { class: "row" },
        h("button", { type: "button", onclick: (e) => (body.value.trim() !== d.body.trim() ? review("edit")(e) : review("approve")(e)) }, "Approve"),
        h("button", { type: "button", class: "danger", onclick: review("reject") }, "Reject"),
        h("span", { class: "muted" }, "Edit the text to approve your version.")) : null,
      status,
      h("h3", {}, "Evidence"),
      finding ? [finding.cause ? h("p", {}, finding.cause) : null, evidenceTable(finding.evidence)]
        : h("p", { class: "muted" }, `Finding ${d.finding_id} (run detection to see its evidence).`),
      citationList(d.sources));
    return card;
  }

  async function loadDrafts() {
    try {
      const { drafts } = await api("GET", tenantPath(`/outreach/drafts?state=${stateSelect.value}`));
      clear(draftsBox, ...(drafts.length ? drafts.map(renderDraft) : [h("p", { class: "card muted" }, "No drafts in this state.")]));
    } catch (e) { error.textContent = describeError(e); }
  }
  // Findings carry the evidence the drafts are reviewed against.
  await runDetection();
});
