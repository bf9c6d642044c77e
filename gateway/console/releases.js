"use strict";
// The tenant's releases on the insights page (admins only): every release with its state (the
// live one marked), its components and its latest golden-conversation run; create a candidate,
// compare two, promote behind the suite (a release whose suite has not passed needs an override
// reason, which is recorded), roll back with a reason, and the history of it all. Then the loop
// that proves a candidate on live traffic: run it in shadow and read its decisions against what
// humans did, serve it as a canary that rolls back by itself when worse, and refit the confidence
// from the tenant's judged answers into a new candidate.

const RELEASE_EVENT_LABELS = {
  created: "created",
  suite_recorded: "suite run recorded",
  promoted: "promoted",
  promoted_with_override: "promoted with override",
  rolled_back: "rolled back",
  shadow_started: "shadow started",
  shadow_stopped: "shadow stopped",
  canary_started: "canary started",
  canary_stopped: "canary stopped",
  canary_rolled_back: "canary rolled back",
  refitted: "confidence refitted",
};
const RELEASE_EVENT_BADGES = { rolled_back: "bad", canary_rolled_back: "bad", promoted_with_override: "warn", promoted: "ok" };
const CANARY_STATE_BADGES = { running: "warn", rolled_back: "bad", promoted: "ok", stopped: "" };
// A running canary is read again this often: an automatic rollback shows without a reload.
const CANARY_POLL_MS = 5000;

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

function tableHead(titles) { return h("thead", {}, h("tr", {}, titles.map((t) => h("th", {}, t)))); }

/** "75% (15/20)"; "—" when there is nothing to divide. */
function ratioText(part, whole) { return whole ? `${percent(part / whole)} (${part}/${whole})` : "—"; }

/** A share alone, its counts on hover. */
function rateCell(part, whole) { return h("td", { title: `${part}/${whole}` }, whole ? percent(part / whole) : "—"); }

/**
 * What a panel shows instead of its figures: `none` when there is nothing yet (404), the concierge's own
 * words when it runs without that part (NOT_SERVED); null for a failure to report as one.
 */
function absentText(error, none) {
  if (!(error instanceof ApiError)) return null;
  if (error.status === 404) return none;
  return error.problem.reason === "NOT_SERVED" ? `Not available: ${error.message}.` : null;
}

function decisionText(decision, reason, confidence) {
  return `${decision || "—"}${reason ? ` (${reason})` : ""}, confidence ${Number(confidence).toFixed(2)}`;
}

/** Live and candidate side by side on the shadowed turns; the better of two judged figures is marked. */
function shadowArms(live, candidate, liveId, candidateId) {
  const metrics = [
    ["Turns decided", (a) => String(a.turns), null],
    ["Answered", (a) => ratioText(a.answered, a.turns), null],
    ["Agreement with humans", (a) => ratioText(a.agreed, a.human_judged), (a) => (a.human_judged ? a.agreement : null)],
    ["Judged accuracy at its threshold", (a) => ratioText(a.answered_correct, a.answered_judged),
      (a) => (a.answered_judged ? a.judged_accuracy : null)],
    ["Intent as the agent set it", (a) => ratioText(a.intent_agreed, a.intent_labelled),
      (a) => (a.intent_labelled ? a.intent_agreed / a.intent_labelled : null)],
  ];
  const better = (mine, theirs) => (mine !== null && theirs !== null && mine > theirs ? "better" : null);
  return h("table", { class: "arms", id: "shadow-overall" }, tableHead(["", `Live ${liveId}`, `Candidate ${candidateId}`]),
    h("tbody", {}, metrics.map(([label, text, score]) => {
      const [l, c] = score ? [score(live), score(candidate)] : [null, null];
      return h("tr", { "data-metric": label }, h("th", {}, label),
        h("td", { class: better(l, c) }, text(live)), h("td", { class: better(c, l) }, text(candidate)));
    })));
}

/**
 * The tenant's latest shadow and its report: both releases' decisions on the same live turns against
 * what humans did (agents' verdicts on the AI's answer, customers' ratings, the intent the agent set),
 * overall and per topic, and the turns they decided differently. `ctx.changed()` refreshes the card.
 */
function shadowReportPanel(box, ctx) {
  async function stop() {
    try {
      const shadow = await api("POST", tenantPath("/shadow:stop"), {});
      ctx.say(`The shadow of ${shadow.release_id} is stopped; its decisions stay for the report.`);
      await ctx.changed();
    } catch (e) { ctx.fail(e); }
  }

  function render(report) {
    const shadow = report.shadow;
    const liveId = report.live.release_id || shadow.live_release_id;
    clear(box,
      h("div", { class: "row" },
        h("strong", {}, `${shadow.release_id} in shadow`),
        h("span", { class: `badge ${shadow.active ? "warn" : ""}`, id: "shadow-state" }, shadow.active ? "running" : "stopped"),
        h("span", { class: "muted", id: "shadow-counts" }, `${percent(shadow.sample_rate)} of live turns · ${shadow.shadowed_turns} decided · `
          + `${shadow.skipped_turns} skipped (replica budget full) · started by ${shadow.started_by}, ${when(shadow.started_at)}`
          + (shadow.stopped_at ? ` · stopped ${when(shadow.stopped_at)}` : "")),
        shadow.active ? h("button", { type: "button", class: "secondary", onclick: stop }, "Stop shadow") : null,
        h("button", { type: "button", class: "secondary", onclick: refresh }, "Refresh report")),
      shadowArms(report.live, report.candidate, liveId, shadow.release_id),
      report.topics.length ? h("table", { id: "shadow-topics" },
        h("thead", {},
          h("tr", {}, h("th", { rowspan: "2" }, "Topic"), h("th", { rowspan: "2" }, "Turns"),
            ["Answered", "Agreement with humans", "Judged accuracy"].map((t) => h("th", { colspan: "2" }, t))),
          h("tr", {}, [1, 2, 3].map(() => [h("th", { class: "muted" }, liveId), h("th", { class: "muted" }, shadow.release_id)]))),
        h("tbody", {}, report.topics.map((t) => h("tr", { "data-topic": t.topic },
          h("td", {}, t.topic || "(no intent)"), h("td", {}, t.live.turns),
          rateCell(t.live.answered, t.live.turns), rateCell(t.candidate.answered, t.candidate.turns),
          rateCell(t.live.agreed, t.live.human_judged), rateCell(t.candidate.agreed, t.candidate.human_judged),
          rateCell(t.live.answered_correct, t.live.answered_judged),
          rateCell(t.candidate.answered_correct, t.candidate.answered_judged)))))
        : null,
      h("h4", {}, "Decided differently"),
      report.disagreements.length ? h("ul", { id: "shadow-disagreements", class: "disagreements" },
        report.disagreements.map((d) => h("li", { class: "disagreement", "data-conversation": d.conversation_id },
          h("blockquote", { class: "customer-text" }, d.customer_text),
          h("div", { class: "muted" }, `${d.topic || "(no intent)"} · ${d.conversation_id}, turn ${d.turn_index}`),
          h("dl", { class: "facts" },
            h("dt", {}, `Live ${liveId}`), h("dd", { class: "live-decision" }, decisionText(d.live_decision, d.live_reason, d.live_confidence)),
            h("dt", {}, `Candidate ${shadow.release_id}`),
            h("dd", { class: "candidate-decision" }, decisionText(d.candidate_decision, d.candidate_reason, d.candidate_confidence)),
            h("dt", {}, "Humans"), h("dd", { class: "human-verdict" }, d.human_verdict || "no verdict yet"),
            d.candidate_reply ? [h("dt", {}, "It would have replied"), h("dd", { class: "candidate-reply" }, d.candidate_reply)] : null))))
        : h("p", { class: "muted" }, "No turn decided differently yet."),
      report.method ? h("p", { class: "muted", id: "shadow-method" }, report.method) : null);
  }

  async function refresh() {
    try {
      render(await api("GET", tenantPath("/shadow-report?max_disagreements=20")));
    } catch (e) {
      const absent = absentText(e, "No shadow has run yet: start one on a candidate above (Shadow…).");
      if (absent) clear(box, h("p", { class: "muted" }, absent));
      else ctx.fail(e);
    }
  }
  return { refresh };
}

/** "5 points" from a rate difference of 0.05. */
function points(rate) { return `${Math.round(rate * 1000) / 10} points`; }

/**
 * The tenant's running (else latest) canary: both arms as last evaluated, the verdict, why it ended;
 * stop it by hand with a reason. Read again while it runs, so an automatic rollback shows by itself.
 */
function canaryPanel(box, ctx) {
  const figures = h("div", {});
  const reason = h("input", { type: "text", maxlength: "500", size: "40", "aria-label": "Canary stop reason", placeholder: "why (recorded)" });
  const stopForm = h("form", { id: "canary-stop-form", class: "row", hidden: true }, reason,
    h("button", { type: "submit", class: "danger" }, "Stop canary"));
  let timer = null;
  let lastState = null;
  clear(box, figures, stopForm);

  stopForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      if (!reason.value.trim()) throw new Error("Say why you stop the canary: the reason is recorded.");
      const canary = await api("POST", tenantPath("/canary:stop"), { reason: reason.value.trim() });
      reason.value = "";
      ctx.say(`The canary of ${canary.release_id} is stopped: ${canary.live_release_id || "the live release"} serves every conversation again.`);
      await ctx.changed();
    } catch (e) { ctx.fail(e); }
  });

  function render(canary) {
    const liveArm = canary.live, canaryArm = canary.canary;
    const arms = [
      ["Turns", (a) => String(a.turns)],
      ["Escalated", (a) => ratioText(a.escalated, a.turns)],
      ["Judged right", (a) => ratioText(a.judged_correct, a.judged)],
      ["Rated helpful", (a) => ratioText(a.rated_helpful, a.rated)],
    ];
    const policy = canary.policy;
    clear(figures,
      h("div", { class: "row" },
        h("strong", {}, `Canary ${canary.release_id}`),
        h("span", { class: `badge ${CANARY_STATE_BADGES[canary.state] ?? ""}`, id: "canary-state" }, canary.state.replace("_", " ")),
        h("span", { class: "muted" }, `${canary.percent}% of conversations, compared with live ${canary.live_release_id} · `
          + `started by ${canary.started_by}, ${when(canary.started_at)}` + (canary.ended_at ? ` · ended ${when(canary.ended_at)}` : "")),
        h("button", { type: "button", class: "secondary", onclick: refresh }, "Refresh")),
      canary.end_reason ? h("p", { class: canary.state === "rolled_back" ? "notice" : "muted", id: "canary-end-reason" },
        `Ended: ${canary.end_reason}`) : null,
      h("table", { class: "arms", id: "canary-arms" },
        tableHead(["", `Live ${liveArm.release_id || canary.live_release_id}`, `Canary ${canaryArm.release_id || canary.release_id}`]),
        h("tbody", {}, arms.map(([label, text]) => h("tr", { "data-metric": label },
          h("th", {}, label), h("td", {}, text(liveArm)), h("td", {}, text(canaryArm)))))),
      h("p", { id: "canary-verdict" }, h("strong", {}, "Latest evaluation: "), canary.verdict || "not evaluated yet",
        canary.evaluated_at ? h("span", { class: "muted" }, ` (${when(canary.evaluated_at)})`) : null),
      h("p", { class: "muted" }, `Rolled back automatically when, at ${percent(policy.confidence)} confidence, it is worse than live `
        + `by more than ${points(policy.accuracy_margin)} in answers judged wrong (once each arm has ${policy.min_judged} judged answers) `
        + `or ${points(policy.escalation_margin)} in escalations (once each arm has ${policy.min_turns} turns).`));
    stopForm.hidden = canary.state !== "running";
  }

  async function refresh() {
    clearTimeout(timer);
    let canary;
    try {
      canary = await api("GET", tenantPath("/canary"));
    } catch (e) {
      const absent = absentText(e, "No canary has run yet: start one on a candidate above (Canary…).");
      if (absent) {
        clear(figures, h("p", { class: "muted" }, absent));
        stopForm.hidden = true;
      } else ctx.fail(e);
      return;
    }
    const ended = lastState === "running" && canary.state !== "running";
    lastState = canary.state;
    render(canary);
    // It ended behind this page's back (an automatic rollback): the list and the history change too.
    if (ended) await ctx.changed();
    else if (canary.state === "running" && box.isConnected) timer = setTimeout(refresh, CANARY_POLL_MS);
  }
  return { refresh };
}

/**
 * Refit the confidence from the tenant's judged answers into a candidate, and show its out-of-fold check.
 * `ctx.liveThreshold()` is the live release's default threshold, shown beside the refit's.
 */
function refitPanel(box, ctx) {
  const target = h("input", { type: "number", min: "0.51", max: "0.99", step: "0.01", value: "0.9" });
  const button = h("button", { type: "submit" }, "Refit confidence");
  const form = h("form", { id: "refit-form", class: "row" }, h("label", {}, "Target accuracy ", target), button);
  const result = h("div", { id: "refit-result" });
  // One id per refit, kept across retries of it: a retry after a lost answer gets the same release.
  let requestId = randomId("refit-");
  clear(box,
    h("p", { class: "muted" }, "Refit the confidence from this tenant's judged answers (agents' verdicts and customers' ratings), "
      + "checked out of fold beside the live fit on the same answers. The result is a candidate: the live release with the new "
      + "fit and per-topic thresholds for the target accuracy. Prove it like any other: suite, shadow, canary."),
    form, result);

  function render(done) {
    const v = done.validation;
    clear(result,
      h("p", {}, `Candidate ${done.release.release_id}: ${v.examples} judged answers (${v.correct} right), ${v.folds} folds; `
        + "each answer is scored by a fit that never saw it."),
      h("table", { class: "arms", id: "refit-validation" }, tableHead(["", "Live fit", "Refit, out of fold"]),
        h("tbody", {},
          h("tr", {}, h("th", {}, "Calibration error (ECE)"), h("td", {}, v.live_ece.toFixed(3)), h("td", {}, v.refit_ece.toFixed(3))),
          h("tr", {}, h("th", {}, "Answered (coverage)"), h("td", {}, percent(v.live_coverage)), h("td", {}, percent(v.refit_coverage))),
          h("tr", {}, h("th", {}, "Accuracy of those answers"), h("td", {}, percent(v.live_accuracy)), h("td", {}, percent(v.refit_accuracy))),
          h("tr", {}, h("th", {}, "Default threshold"), h("td", {}, ctx.liveThreshold() ?? "—"), h("td", {}, v.threshold.toFixed(2))))),
      v.topics.length ? h("table", { id: "refit-topics" }, tableHead(["Topic", "Judged answers", "Threshold", "Coverage", "Accuracy"]),
        h("tbody", {}, v.topics.map((t) => h("tr", { "data-topic": t.topic },
          h("td", {}, t.topic || "(no intent)"), h("td", {}, t.examples), h("td", {}, t.threshold ? t.threshold.toFixed(2) : "default"),
          h("td", {}, percent(t.coverage)), h("td", {}, percent(t.accuracy))))))
        : h("p", { class: "muted" }, "No topic has enough judged answers for a threshold of its own: each keeps the default."));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const accuracy = Number(target.value);
      if (!(accuracy > 0.5 && accuracy < 1)) throw new Error("The target accuracy is between 0.5 and 1, e.g. 0.9.");
      button.disabled = true;
      const done = await api("POST", tenantPath("/releases:refit"), { request_id: requestId, target_accuracy: accuracy });
      requestId = randomId("refit-");
      render(done);
      ctx.say(`Candidate ${done.release.release_id} made from ${done.validation.examples} judged answers: run its suite, shadow it, then canary it.`);
      await ctx.changed();
    } catch (e) {
      ctx.fail(e);
    } finally {
      button.disabled = false;
    }
  });
}

/** The releases card; `box` is filled and kept up to date. */
function releasesPanel(box) {
  const error = h("p", { class: "error", role: "alert", id: "releases-error" });
  const notice = h("p", { class: "ok", id: "releases-notice", role: "status" });
  const list = h("div", { id: "release-list" }, h("p", { class: "muted" }, "Loading…"));
  const promotePanel = h("div", { id: "promote-panel" });
  const loopPanel = h("div", { id: "loop-panel" });
  const shadowBox = h("div", { id: "shadow-panel" });
  const canaryBox = h("div", { id: "canary-panel" });
  const refitBox = h("div", { id: "refit-panel" });
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
    error, notice, list, promotePanel, loopPanel,
    h("h3", {}, "Shadow"),
    h("p", { class: "muted" }, "A candidate in shadow also decides a share of live turns, after the live reply, never answering, "
      + "handing over or acting; its decisions are compared with the live release's and with what humans did."),
    shadowBox,
    h("h3", {}, "Canary"),
    h("p", { class: "muted" }, "A canary serves a share of conversations (a random draw, sticky per conversation) and is rolled "
      + "back automatically when its escalations or judged answers are worse than the live release's past the bound."),
    canaryBox,
    h("h3", {}, "Confidence refit"), refitBox,
    h("h3", {}, "New candidate"), createForm,
    h("h3", {}, "Compare"),
    h("form", { id: "compare-form", class: "row" }, baseSelect, " with ", otherSelect, h("button", { type: "submit", class: "secondary" }, "Compare")),
    compareResult,
    h("h3", {}, "Roll back"),
    h("form", { id: "rollback-form", class: "row" }, rollbackTo, rollbackReason, h("button", { type: "submit", class: "danger" }, "Roll back")),
    h("h3", {}, "History"), events);

  function say(text) { error.textContent = ""; notice.textContent = text; }
  function fail(e) { notice.textContent = ""; error.textContent = e instanceof ApiError ? describeError(e) : e.message; }
  const loop = {
    say, fail, changed: () => refresh(),
    liveThreshold: () => releases.find((r) => r.state === "live")?.components.thresholds[""],
  };
  const shadowView = shadowReportPanel(shadowBox, loop);
  const canaryView = canaryPanel(canaryBox, loop);
  refitPanel(refitBox, loop);

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
        h("td", { class: "release-actions" }, r.state === "live" ? null : [
          h("button", { type: "button", class: "secondary", onclick: () => openPromote(r, live) }, `Promote ${r.release_id}…`),
          h("button", { type: "button", class: "secondary", onclick: () => openShadow(r) }, `Shadow ${r.release_id}…`),
          h("button", { type: "button", class: "secondary", onclick: () => openCanary(r, live) }, `Canary ${r.release_id}…`)])))))
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
    clear(loopPanel);
    clear(promotePanel, form);
    (passed ? form.querySelector("button") : reason).focus();
  }

  /** A form in the loop panel that starts something on a release; `start` returns the notice to show. */
  function openLoopForm(id, title, fields, submitLabel, start) {
    const form = h("form", { class: "card", id },
      h("h3", {}, title), fields,
      h("div", { class: "row" },
        h("button", { type: "submit" }, submitLabel),
        h("button", { type: "button", class: "secondary", onclick: () => clear(loopPanel) }, "Cancel")));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const done = await start(form);
        clear(loopPanel);
        say(done);
        await refresh();
      } catch (e) { fail(e); }
    });
    clear(promotePanel);
    clear(loopPanel, form);
    form.querySelector("input")?.focus();
  }

  function openShadow(release) {
    const rate = h("input", { type: "number", min: "0.01", max: "1", step: "0.01", value: "1" });
    openLoopForm("shadow-form", `Run ${release.release_id} in shadow`, [
      h("p", { class: "muted" }, "It decides the sampled live turns again after the live reply is stored; a shadow running now is stopped."),
      h("label", {}, "Sample rate (share of live turns) ", rate)], `Start shadow of ${release.release_id}`, async () => {
      const sampleRate = Number(rate.value);
      if (!(sampleRate > 0 && sampleRate <= 1)) throw new Error("The sample rate is a share of live turns: above 0, at most 1.");
      const done = await api("POST", tenantPath(`/releases/${encodeURIComponent(release.release_id)}:shadow`), { sample_rate: sampleRate });
      return `${done.shadow.release_id} runs in shadow on ${percent(done.shadow.sample_rate)} of live turns.`;
    });
  }

  function openCanary(release, live) {
    const share = h("input", { type: "number", min: "1", max: "50", step: "1", value: "10" });
    const reason = h("textarea", { maxlength: "500", rows: "2", "aria-label": "Canary override reason",
      placeholder: "Why start it without a passing suite (recorded)" });
    const overrideBox = h("div", { class: "override" },
      h("p", { class: "notice" }, `${release.release_id} has not passed its suite: ${suiteInWords(release)}. `
        + "A canary is refused unless you override it with a reason, which is recorded."),
      h("label", {}, "Override reason", reason));
    openLoopForm("canary-form", `Serve ${release.release_id} as a canary`, [
      h("p", { class: "muted" }, `It serves this share of conversations beside ${live ? live.release_id : "the live release"}, `
        + "and is rolled back by itself when it does worse."),
      h("label", {}, "Percent of conversations ", share),
      release.suite_passed ? null : overrideBox], `Start canary of ${release.release_id}`, async (form) => {
      const percentOf = Number(share.value);
      if (!(Number.isInteger(percentOf) && percentOf >= 1 && percentOf <= 50)) throw new Error("A canary serves 1 to 50 percent of conversations.");
      const body = { percent: percentOf };
      if (reason.value.trim()) body.override_reason = reason.value.trim();
      try {
        const done = await api("POST", tenantPath(`/releases/${encodeURIComponent(release.release_id)}:canary`), body);
        return `${done.canary.release_id} serves ${done.canary.percent}% of conversations as a canary.`;
      } catch (e) {
        // The concierge is the gate, as for a promotion: a release it finds unproven gets the override field.
        if (e instanceof ApiError && e.problem.reason === "SUITE_NOT_PASSED" && !overrideBox.isConnected) {
          form.insertBefore(overrideBox, form.lastElementChild);
        }
        throw e;
      }
    });
  }

  function renderEvents(page, append) {
    const rows = page.map((e) => h("tr", { "data-kind": e.kind },
      h("td", { class: "muted" }, when(e.occurred_at)),
      h("td", {}, h("span", { class: `badge ${RELEASE_EVENT_BADGES[e.kind] || ""}` }, RELEASE_EVENT_LABELS[e.kind] || e.kind)),
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
    // A promotion ends a canary of its release, a rollback may stop one: read both again.
    await Promise.all([shadowView.refresh(), canaryView.refresh()]);
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
