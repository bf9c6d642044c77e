"use strict";
// The tenant's releases on the insights page (admins only): every release with its state (the
// live one marked), its components and its latest golden-conversation run; create a candidate,
// compare two, promote behind the suite (a release whose suite has not passed needs an override
// reason, which is recorded), roll back with a reason, and the history of it all.

const RELEASE_EVENT_LABELS = {
  created: "created",
  suite_recorded: "suite run recorded",
  promoted: "promoted",
  promoted_with_override: "promoted with override",
  rolled_back: "rolled back",
};

/** "passed 59/60", "partial", "no run": what promotion will make of a release's latest suite run. */
function suiteBadge(release) {
  const run = release.latest_suite_run;
  if (!run) return h("span", { class: "badge warn suite", title: "No golden-conversation run recorded" }, "no suite run");
  const score = `${run.passed}/${run.total}`;
  if (run.partial) return h("span", { class: "badge warn suite", title: "A subset of the suite: it clears nothing" }, `partial ${score}`);
  return h("span", { class: `badge ${release.suite_passed ? "ok" : "bad"} suite` }, `suite ${score} passed`);
}

function suiteInWords(release) {
  const run = release.latest_suite_run;
  if (!run) return "it has no suite run";
  if (run.partial) return `its latest suite run was partial (${run.passed}/${run.total})`;
  return `its latest suite run passed ${run.passed} of ${run.total}`;
}

function thresholdsText(thresholds) {
  const entries = Object.entries(thresholds || {});
  if (!entries.length) return "—";
  return entries.map(([intent, value]) => `${intent || "default"} ${value}`).join(" · ");
}

/** A release's components, its digest and its latest run's failures, folded away. */
function releaseDetails(release) {
  const c = release.components;
  const run = release.latest_suite_run;
  const failed = run ? run.results.filter((r) => !r.passed) : [];
  return h("details", { class: "release-details" },
    h("summary", {}, "components"),
    h("dl", { class: "facts" },
      h("dt", {}, "LLM model"), h("dd", {}, c.llm_model || "—"),
      h("dt", {}, "Prompt version"), h("dd", {}, c.prompt_version || "—"),
      h("dt", {}, "Confidence fit"), h("dd", {}, c.confidence_fit_version || "—"),
      h("dt", {}, "Thresholds"), h("dd", { class: "thresholds" }, thresholdsText(c.thresholds)),
      h("dt", {}, "Triage model"), h("dd", {}, c.triage_model_version || "—"),
      h("dt", {}, "Routing policy"), h("dd", {}, c.routing_policy_version || "—"),
      h("dt", {}, "Persona"), h("dd", {}, c.persona_version || "—"),
      h("dt", {}, "Action catalog"), h("dd", {}, c.action_catalog_version || "none"),
      h("dt", {}, "Digest"), h("dd", {}, release.digest),
      run ? [h("dt", {}, "Suite run"), h("dd", {},
        `${run.passed}/${run.total} passed${run.partial ? " (partial)" : ""}, by ${run.run_by}, ${when(run.finished_at)}`)] : null),
    failed.length ? h("ul", { class: "failures" }, failed.map((r) => h("li", {},
      h("strong", {}, r.name), r.failures.length ? `: ${r.failures.join("; ")}` : ""))) : null);
}

/** "billing=0.9, default=0.8" -> {billing: 0.9, "": 0.8}; throws on anything else. */
function parseThresholds(text) {
  const thresholds = {};
  for (const part of text.split(/[,\n]/).map((p) => p.trim()).filter(Boolean)) {
    const match = /^([^=\s]*)\s*=\s*([0-9.]+)$/.exec(part);
    const value = match ? Number(match[2]) : NaN;
    if (!match || !(value >= 0 && value <= 1)) throw new Error(`Threshold "${part}": write intent=value, the value between 0 and 1.`);
    thresholds[match[1] === "default" ? "" : match[1]] = value;
  }
  return thresholds;
}

/** The releases card; `box` is filled and kept up to date. */
function releasesPanel(box) {
  const error = h("p", { class: "error", role: "alert", id: "releases-error" });
  const notice = h("p", { class: "ok", id: "releases-notice", role: "status" });
  const list = h("div", { id: "release-list" }, h("p", { class: "muted" }, "Loading…"));
  const promotePanel = h("div", { id: "promote-panel" });
  const compareResult = h("div", { id: "release-compare" });
  const events = h("div", { id: "release-events" });
  const baseSelect = h("select", { "aria-label": "Compare base release" });
  const otherSelect = h("select", { "aria-label": "Compare other release" });
  const rollbackTo = h("select", { "aria-label": "Roll back to" });
  const rollbackReason = h("input", { type: "text", maxlength: "500", "aria-label": "Rollback reason", placeholder: "why" });

  const description = h("input", { type: "text", maxlength: "500", required: true, size: "40" });
  const thresholds = h("input", { type: "text", placeholder: "default=0.85, billing=0.9", size: "28" });
  const llmModel = h("input", { type: "text", maxlength: "200", placeholder: "the concierge's" });
  const promptVersion = h("input", { type: "text", maxlength: "64", placeholder: "the concierge's" });
  const createButton = h("button", { type: "submit" }, "Create candidate");
  const createForm = h("form", { id: "release-form" },
    h("div", { class: "row" },
      h("label", {}, "Description ", description),
      h("label", {}, "Thresholds ", thresholds)),
    h("div", { class: "row" },
      h("label", {}, "LLM model ", llmModel),
      h("label", {}, "Prompt version ", promptVersion),
      createButton));
  // One id per creation, kept across retries of it: a retry after a lost answer gets the same release.
  let requestId = randomId("rel-");
  let releases = [];
  let eventsToken = null;

  clear(box,
    h("h2", {}, "Releases"),
    h("p", { class: "muted" }, "A release fixes everything that decides what customers get: model, prompts, confidence fit "
      + "and thresholds, triage model, routing, persona, action catalog. One is live. A candidate goes live only once its "
      + "golden conversations pass (bench/scenarios.py --release <id> --record), or with an override reason, recorded."),
    error, notice, list, promotePanel,
    h("h3", {}, "New candidate"), createForm,
    h("h3", {}, "Compare"),
    h("form", { id: "compare-form", class: "row" }, baseSelect, " with ", otherSelect, h("button", { type: "submit", class: "secondary" }, "Compare")),
    compareResult,
    h("h3", {}, "Roll back"),
    h("form", { id: "rollback-form", class: "row" }, rollbackTo, rollbackReason, h("button", { type: "submit", class: "danger" }, "Roll back")),
    h("h3", {}, "History"), events);

  function say(text) { error.textContent = ""; notice.textContent = text; }
  function fail(e) { notice.textContent = ""; error.textContent = e instanceof ApiError ? describeError(e) : e.message; }

  function options(select, keep, first) {
    const chosen = select.value;
    clear(select, first, ...releases.map((r) => h("option", { value: r.release_id },
      `${r.release_id}${r.state === "live" ? " (live)" : ""}`)));
    select.value = keep(chosen);
  }

  function renderList() {
    const live = releases.find((r) => r.state === "live");
    clear(list, releases.length ? h("table", {},
      h("thead", {}, h("tr", {}, ["Release", "State", "What changed", "Suite", "Created", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, releases.map((r) => h("tr", { "data-release": r.release_id, class: r.state === "live" ? "live" : null },
        h("td", {}, h("strong", {}, r.release_id), releaseDetails(r)),
        h("td", {}, h("span", { class: `badge state ${r.state === "live" ? "ok" : r.state === "retired" ? "" : "warn"}` }, r.state)),
        h("td", {}, r.description),
        h("td", {}, suiteBadge(r)),
        h("td", { class: "muted" }, `${r.created_by}, ${when(r.created_at)}`),
        h("td", {}, r.state === "live" ? null : h("button", { type: "button", class: "secondary",
          onclick: () => openPromote(r, live) }, `Promote ${r.release_id}…`))))))
      : h("p", { class: "muted" }, "No releases yet: the first turn served makes r1 from the working copy."));
    options(baseSelect, (v) => v || (live ? live.release_id : ""), null);
    options(otherSelect, (v) => v || (releases.find((r) => r.state === "candidate") || releases[0] || {}).release_id || "", null);
    // Rolling back goes to a release that served before (retired); by default the one live before the current.
    const chosen = rollbackTo.value;
    clear(rollbackTo, h("option", { value: "" }, "the release live before"),
      ...releases.filter((r) => r.state === "retired" && r.promoted_at).map((r) => h("option", { value: r.release_id }, r.release_id)));
    rollbackTo.value = [...rollbackTo.options].some((o) => o.value === chosen) ? chosen : "";
  }

  function openPromote(release, live) {
    const passed = release.suite_passed;
    const reason = h("textarea", { id: "override-reason", maxlength: "500", rows: "2",
      "aria-label": "Override reason", placeholder: "Why promote without a passing suite (recorded)" });
    const overrideBox = h("div", { class: "override" },
      h("p", { class: "notice" }, `${release.release_id} has not passed its suite: ${suiteInWords(release)}. `
        + "Promotion is refused unless you override it with a reason, which is recorded."),
      h("label", {}, "Override reason", reason));
    const form = h("form", { class: "card", id: "promote-form" },
      h("h3", {}, `Promote ${release.release_id}`),
      h("p", { class: "muted" }, `${release.release_id} serves every new turn; ${live ? live.release_id : "the live release"} retires.`),
      passed ? null : overrideBox,
      h("div", { class: "row" },
        h("button", { type: "submit" }, `Promote ${release.release_id}`),
        h("button", { type: "button", class: "secondary", onclick: () => clear(promotePanel) }, "Cancel")));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const overrideReason = reason.value.trim();
      try {
        const done = await api("POST", tenantPath(`/releases/${encodeURIComponent(release.release_id)}:promote`),
          overrideReason ? { override_reason: overrideReason } : {});
        clear(promotePanel);
        say(`${done.release.release_id} is live${done.event.kind === "promoted_with_override" ? " (promoted with override)" : ""}.`);
        await refresh();
      } catch (e) {
        // The concierge is the gate: a release it finds unproven gets the override field even if this page thought otherwise.
        if (e instanceof ApiError && e.problem.reason === "SUITE_NOT_PASSED" && !overrideBox.isConnected) {
          form.insertBefore(overrideBox, form.lastElementChild);
        }
        fail(e);
      }
    });
    clear(promotePanel, form);
    (passed ? form.querySelector("button") : reason).focus();
  }

  function renderEvents(page, append) {
    const rows = page.map((e) => h("tr", { "data-kind": e.kind },
      h("td", { class: "muted" }, when(e.occurred_at)),
      h("td", {}, h("span", { class: `badge ${e.kind === "rolled_back" ? "bad" : e.kind === "promoted_with_override" ? "warn" : e.kind === "promoted" ? "ok" : ""}` },
        RELEASE_EVENT_LABELS[e.kind] || e.kind)),
      h("td", {}, e.release_id, e.previous_release_id ? h("span", { class: "muted" }, ` (was ${e.previous_release_id})`) : null),
      h("td", {}, e.actor),
      h("td", {}, e.detail)));
    const tbody = append && events.querySelector("tbody");
    if (tbody) tbody.append(...rows);
    else clear(events, page.length ? h("table", {}, h("thead", {}, h("tr", {}, ["When", "What", "Release", "Who", "Why"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows)) : h("p", { class: "muted" }, "Nothing has happened to this tenant's releases yet."));
    events.querySelector("#older-events")?.remove();
    if (eventsToken) events.append(h("button", { type: "button", class: "secondary", id: "older-events", onclick: olderEvents }, "Older events"));
  }

  async function olderEvents() {
    try {
      const page = await api("GET", tenantPath(`/release-events?page_size=50&page_token=${encodeURIComponent(eventsToken)}`));
      eventsToken = page.next_page_token;
      renderEvents(page.events, true);
    } catch (e) { fail(e); }
  }

  async function refresh() {
    try {
      const [listed, history] = await Promise.all([
        api("GET", tenantPath("/releases?page_size=100")),
        api("GET", tenantPath("/release-events?page_size=50")),
      ]);
      releases = listed.releases;
      eventsToken = history.next_page_token;
      renderList();
      renderEvents(history.events, false);
    } catch (e) { fail(e); }
  }

  createForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const overrides = { thresholds: parseThresholds(thresholds.value) };
      if (llmModel.value.trim()) overrides.llm_model = llmModel.value.trim();
      if (promptVersion.value.trim()) overrides.prompt_version = promptVersion.value.trim();
      createButton.disabled = true;
      const release = await api("POST", tenantPath("/releases"), { description: description.value.trim(), overrides, request_id: requestId });
      requestId = randomId("rel-");
      createForm.reset();
      say(`Candidate ${release.release_id} created: run its suite, then promote it.`);
      await refresh();
    } catch (e) {
      fail(e);
    } finally {
      createButton.disabled = false;
    }
  });

  box.querySelector("#compare-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const base = baseSelect.value, other = otherSelect.value;
      const compared = await api("GET", tenantPath(`/releases/${encodeURIComponent(base)}:compare?with=${encodeURIComponent(other)}`));
      clear(compareResult,
        h("p", {}, `${compared.base.release_id} `, suiteBadge(compared.base), ` against ${compared.other.release_id} `, suiteBadge(compared.other)),
        compared.changes.length
          ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Component"), h("th", {}, compared.base.release_id), h("th", {}, compared.other.release_id))),
            h("tbody", {}, compared.changes.map((c) => h("tr", {}, h("td", {}, c.component), h("td", {}, c.base || "—"), h("td", {}, c.other || "—")))))
          : h("p", { class: "muted" }, "No component differs."));
      error.textContent = "";
    } catch (e) { fail(e); }
  });

  box.querySelector("#rollback-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      if (!rollbackReason.value.trim()) throw new Error("Say why you roll back: the reason is recorded.");
      const body = { reason: rollbackReason.value.trim() };
      if (rollbackTo.value) body.to_release_id = rollbackTo.value;
      const done = await api("POST", tenantPath("/releases:rollback"), body);
      rollbackReason.value = "";
      say(`${done.release.release_id} is live again (rolled back from ${done.event.previous_release_id || "the live release"}).`);
      await refresh();
    } catch (e) { fail(e); }
  });

  refresh();
}
