"use strict";
// The agent console: the queue, one handoff with its context package, the AI
// draft in an editor, send (recorded as feedback on the draft), resolve.

const QUEUE_REFRESH_MS = 10000;

startPage(async (main) => {
  const queueList = h("ul", { class: "queue", id: "queue", role: "listbox", "aria-label": "Handoff queue" });
  const stateSelect = h("select", { "aria-label": "State" },
    h("option", { value: "" }, "open"), h("option", { value: "waiting" }, "waiting"),
    h("option", { value: "assigned" }, "assigned"), h("option", { value: "resolved" }, "resolved"));
  const queueError = h("p", { class: "error", role: "alert" });
  const detail = h("section", { id: "handoff", "aria-live": "polite" },
    h("div", { class: "card muted" }, "Pick a handoff from the queue."));
  let selected = null;

  clear(main,
    h("h1", {}, "Agent console"),
    h("div", { class: "grid" },
      h("section", { class: "card" },
        h("div", { class: "row" }, h("h2", {}, "Queue"), stateSelect,
          h("button", { class: "secondary", type: "button", onclick: () => loadQueue() }, "Refresh")),
        queueError, queueList),
      detail));
  stateSelect.addEventListener("change", () => loadQueue());

  async function loadQueue() {
    try {
      const state = stateSelect.value ? `?state=${stateSelect.value}` : "";
      const { handoffs } = await api("GET", tenantPath(`/handoffs${state}`));
      queueError.textContent = "";
      clear(queueList, ...handoffs.map((item) => h("li", {
        role: "option", "data-id": item.handoff_id, "aria-selected": item.handoff_id === selected ? "true" : "false",
        tabindex: 0, onclick: () => open(item.handoff_id), onkeydown: (e) => e.key === "Enter" && open(item.handoff_id),
      },
        h("div", { class: "row" }, h("strong", {}, item.context?.summary || item.handoff_id)),
        h("div", { class: "muted" },
          h("span", { class: `badge ${item.priority >= 70 ? "bad" : item.priority >= 40 ? "warn" : ""}` }, `P${item.priority}`),
          ` ${item.queue || "default"} · ${item.reason.replace(/_/g, " ")} · ${item.state} · ${when(item.created_at)}`))));
      if (!handoffs.length) queueList.append(h("li", { class: "muted" }, "Nothing waiting."));
    } catch (e) {
      queueError.textContent = describeError(e);
    }
  }

  async function open(handoffId) {
    selected = handoffId;
    for (const li of queueList.querySelectorAll("li[data-id]")) li.setAttribute("aria-selected", li.dataset.id === handoffId ? "true" : "false");
    try {
      render(await api("GET", tenantPath(`/handoffs/${encodeURIComponent(handoffId)}`)));
    } catch (e) {
      clear(detail, h("div", { class: "card error" }, describeError(e)));
    }
  }

  function render(handoff) {
    const c = handoff.context;
    const status = h("p", { class: "muted", role: "status", id: "action-status" });
    const draft = h("textarea", { id: "draft", "aria-label": "Reply to the customer" });
    draft.value = c?.draft_reply || "";
    const resolution = h("input", { id: "resolution", placeholder: "How was it resolved?", "aria-label": "Resolution", size: 40 });
    // An agent's fix of the detected intent retrains triage (exported as labelled examples).
    const intentFix = h("input", { id: "intent-fix", placeholder: "correct intent, if wrong", "aria-label": "Corrected intent", size: 22 });
    const closed = handoff.state === "resolved";

    async function act(button, fn) {
      button.disabled = true;
      try { await fn(); } catch (e) { status.textContent = describeError(e); status.className = "error"; } finally { button.disabled = false; }
    }
    const take = h("button", { type: "button", class: "secondary", disabled: handoff.state !== "waiting" }, "Take");
    take.addEventListener("click", () => act(take, async () => {
      render(await api("POST", tenantPath(`/handoffs/${handoff.handoff_id}/assign`), { expected_version: handoff.version }));
      loadQueue();
    }));
    const send = h("button", { type: "button", id: "send", disabled: closed }, "Send reply");
    send.addEventListener("click", () => act(send, async () => {
      const text = draft.value.trim();
      if (!text) { status.textContent = "Write a reply first."; return; }
      const corrected = intentFix.value.trim();
      const payload = { final_text: text, expected_version: handoff.version };
      if (corrected && c?.intent && corrected !== c.intent) payload.intent_correction = { original_label: c.intent, corrected_label: corrected };
      const result = await api("POST", tenantPath(`/handoffs/${handoff.handoff_id}/replies`), payload);
      if (result.handoff) handoff = result.handoff;
      status.className = "muted";
      status.textContent = `Sent. Draft ${result.draft_use} (edit ratio ${result.edit_ratio.toFixed(2)}); recorded as feedback.`;
    }));
    const resolve = h("button", { type: "button", id: "resolve", class: "danger", disabled: closed }, "Resolve");
    resolve.addEventListener("click", () => act(resolve, async () => {
      const text = resolution.value.trim() || "Answered by the agent.";
      render(await api("POST", tenantPath(`/handoffs/${handoff.handoff_id}/resolve`), { resolution: text, expected_version: handoff.version }));
      loadQueue();
    }));

    const account = c?.account;
    clear(detail,
      h("div", { class: "card" },
        h("div", { class: "row" }, h("h2", {}, c?.summary || `Handoff ${handoff.handoff_id}`),
          h("span", { class: "badge" }, handoff.state), h("span", { class: "badge" }, `P${handoff.priority}`),
          handoff.tier !== "unspecified" ? h("span", { class: "badge" }, handoff.tier.replace(/_/g, " ")) : null),
        h("p", {}, c?.detail || ""),
        c?.summary_method === "pending"
          ? h("p", { class: "muted" }, "The AI summary is still being written; this one is taken from the transcript. Reopen the handoff shortly.")
          : null,
        h("dl", { class: "facts" },
          h("dt", {}, "Customer"), h("dd", {}, `${handoff.customer_id} · ${handoff.channel}`),
          c?.customer_summary ? [h("dt", {}, "Account"), h("dd", {}, c.customer_summary)]
            : account ? [h("dt", {}, "Account"), h("dd", {}, `${account.plan}, ${account.tenure_days} days, ${account.open_tickets} open tickets, ${account.contacts_last_7_days} contacts in 7 days`)] : null,
          c ? [h("dt", {}, "Intent"), h("dd", {}, `${c.intent || "unknown"} (${percent(c.intent_confidence)}) `, c.intent ? intentFix : null)] : null,
          c ? [h("dt", {}, "Sentiment"), h("dd", {}, `${c.sentiment_label || ""} ${c.sentiment_score.toFixed(2)}`)] : null,
          h("dt", {}, "Why handed over"), h("dd", {}, c?.ai_attempt_summary || handoff.reason.replace(/_/g, " ")),
          handoff.assigned_agent_id ? [h("dt", {}, "Agent"), h("dd", {}, handoff.assigned_agent_id)] : null,
          handoff.resolution ? [h("dt", {}, "Resolution"), h("dd", {}, handoff.resolution)] : null)),
      h("div", { class: "card transcript" }, h("h3", {}, "Conversation"),
        handoff.messages.map((m) => h("div", { class: `msg ${m.role}` }, h("div", { class: "meta" }, m.role), m.text))),
      c?.ai_attempt ? h("div", { class: "card" }, h("h3", {}, `What the AI tried (confidence ${percent(c.ai_attempt.confidence)})`),
        h("p", {}, c.ai_attempt.candidate_answer || "No answer generated."),
        h("p", { class: "muted" }, c.ai_attempt.explanation), citationList(c.ai_attempt.citations)) : null,
      c?.suggested_resolutions?.length ? h("div", { class: "card", id: "resolutions" }, h("h3", {}, "Suggested resolutions"),
        h("ol", {}, c.suggested_resolutions.map((r) => h("li", {}, r.text, citationList(r.sources))))) : null,
      h("div", { class: "card" },
        h("h3", {}, "Reply", c?.draft_method ? h("span", { class: "muted" }, ` (AI draft: ${c.draft_method})`) : null),
        draft,
        h("div", { class: "row" }, take, send, resolution, resolve),
        status));
  }

  await loadQueue();
  setInterval(loadQueue, QUEUE_REFRESH_MS);
  const wanted = new URLSearchParams(location.search).get("handoff");
  if (wanted) open(wanted);
});
