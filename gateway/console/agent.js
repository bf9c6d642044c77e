"use strict";
// The agent console: the queue (kept current, new handoffs highlighted), one
// handoff with its context package and the whole conversation (the AI's turns,
// then the thread with the customer), live as the customer writes; the AI
// draft in an editor, send (delivered to the customer, recorded as feedback on
// the draft), resolve; the customer's account (actions.js): records read, actions, approvals, the copilot.

const QUEUE_REFRESH_MS = 3000;
const STATE_LABELS = {
  waiting: "waiting", assigned: "assigned", waiting_on_customer: "waiting on customer",
  reopened: "reopened", resolved: "resolved",
};
const HISTORY_WORDS = {
  created: "handed over by the AI", assigned: "taken", agent_replied: "agent replied",
  customer_wrote: "customer wrote", escalated_again: "handed over again", resolved: "resolved",
  reopened: "reopened", rated: "rated by the customer",
};

// Why the AI handed over, as the queue names it (the rest: the reason code in words).
const REASON_LABELS = { approval_required: "Approval requested" };

function stateLabel(state) { return STATE_LABELS[state] || String(state).replace(/_/g, " "); }
function reasonLabel(reason) { return REASON_LABELS[reason] || String(reason).replace(/_/g, " "); }

startPage(async (main) => {
  const queueList = h("ul", { class: "queue", id: "queue", role: "listbox", "aria-label": "Handoff queue" });
  const stateSelect = h("select", { "aria-label": "State" },
    h("option", { value: "" }, "open"),
    Object.entries(STATE_LABELS).map(([value, label]) => h("option", { value }, label)));
  const queueError = h("p", { class: "error", role: "alert" });
  const detail = h("section", { id: "handoff", "aria-live": "polite" },
    h("div", { class: "card muted" }, "Pick a handoff from the queue."));
  // Handoffs the queue has shown: one not among them is new, and highlighted.
  let seenInQueue = null;
  let opened = null;

  clear(main,
    h("h1", {}, "Agent console"),
    approvalsPanel(),  // actions.js
    h("div", { class: "grid" },
      h("section", { class: "card" },
        h("div", { class: "row" }, h("h2", {}, "Queue"), stateSelect,
          h("button", { class: "secondary", type: "button", onclick: () => loadQueue() }, "Refresh")),
        queueError, queueList),
      detail));
  stateSelect.addEventListener("change", () => { seenInQueue = null; loadQueue(); });

  function queueItem(item, isNew) {
    const reference = item.reference ? `${item.reference} · ` : "";
    return h("li", {
      role: "option", "data-id": item.handoff_id, class: isNew ? "new" : null,
      "aria-selected": item.handoff_id === opened?.id ? "true" : "false",
      tabindex: 0, onclick: () => open(item.handoff_id), onkeydown: (e) => e.key === "Enter" && open(item.handoff_id),
    },
      h("div", { class: "row" }, h("strong", {}, item.context?.summary || item.handoff_id),
        isNew ? h("span", { class: "badge new-badge" }, "new") : null),
      h("div", { class: "muted" },
        h("span", { class: `badge ${item.priority >= 70 ? "bad" : item.priority >= 40 ? "warn" : ""}` }, `P${item.priority}`),
        ` ${reference}${item.queue || "default"} · ${reasonLabel(item.reason)} · `,
        h("span", { class: "state" }, stateLabel(item.state)), ` · ${when(item.created_at)}`));
  }

  async function loadQueue() {
    try {
      const state = stateSelect.value ? `?state=${stateSelect.value}` : "";
      const { handoffs } = await api("GET", tenantPath(`/handoffs${state}`));
      queueError.textContent = "";
      const firstLoad = seenInQueue === null;
      // Still new until the agent opens it, across refreshes.
      const stillNew = new Set([...queueList.querySelectorAll("li.new")].map((li) => li.dataset.id));
      seenInQueue ??= new Set();
      const items = handoffs.map((item) => {
        const isNew = !firstLoad && (!seenInQueue.has(item.handoff_id) || stillNew.has(item.handoff_id))
          && item.handoff_id !== opened?.id;
        seenInQueue.add(item.handoff_id);
        return queueItem(item, isNew);
      });
      clear(queueList, ...items);
      if (!handoffs.length) queueList.append(h("li", { class: "muted" }, "Nothing waiting."));
    } catch (e) {
      queueError.textContent = describeError(e);
    }
  }

  async function open(handoffId) {
    opened?.close();
    for (const li of queueList.querySelectorAll("li[data-id]")) {
      li.setAttribute("aria-selected", li.dataset.id === handoffId ? "true" : "false");
      if (li.dataset.id === handoffId) { li.classList.remove("new"); li.querySelector(".new-badge")?.remove(); }
    }
    try {
      opened = openHandoff(await api("GET", tenantPath(`/handoffs/${encodeURIComponent(handoffId)}`)));
    } catch (e) {
      opened = null;
      clear(detail, h("div", { class: "card error" }, describeError(e)));
    }
  }

  /**
   * One handoff on screen. What the customer and the AI said, the state and the history are
   * redrawn whenever the handoff changes; the reply being written is never touched.
   */
  function openHandoff(first) {
    let handoff = first;
    const id = handoff.handoff_id;
    const thread = new Map();  // message_id -> message, the customer's and agents' messages
    for (const message of handoff.thread || []) thread.set(message.message_id, message);
    const status = h("p", { class: "muted", role: "status", id: "action-status" });
    const facts = h("div", { class: "card", id: "handoff-facts" });
    const transcript = h("div", { class: "card transcript", id: "conversation" });
    // The customer's account, as the handoff reads it live from the actions service (actions.js).
    const account = handoff.conversation_id ? accountCard(handoff.conversation_id) : null;
    const draft = h("textarea", { id: "draft", "aria-label": "Reply to the customer" });
    draft.value = handoff.context?.draft_reply || "";
    const agentName = h("input", { id: "agent-name", "aria-label": "Your name, as the customer sees it", size: 18,
                                   value: signedName() });
    agentName.addEventListener("change", () => localStorage.setItem(AGENT_NAME_ITEM, agentName.value.trim()));
    const resolution = h("input", { id: "resolution", placeholder: "How was it resolved?", "aria-label": "Resolution", size: 40 });
    // An agent's fix of the detected intent retrains triage (exported as labelled examples).
    const intentFix = h("input", { id: "intent-fix", placeholder: "correct intent, if wrong", "aria-label": "Corrected intent", size: 22 });
    const take = h("button", { type: "button", class: "secondary" }, "Take");
    const send = h("button", { type: "button", id: "send" }, "Send reply");
    const resolve = h("button", { type: "button", id: "resolve", class: "danger" }, "Resolve");
    // The reply being sent: a retry of the same text keeps its id, so the server stores it once.
    let pending = null;

    async function act(button, fn) {
      button.disabled = true;
      try {
        await fn();
      } catch (e) {
        status.className = "error";
        status.textContent = e instanceof ApiError && e.status === 409
          ? "The handoff changed meanwhile (shown above): check it and try again."
          : describeError(e);
        if (e instanceof ApiError && e.status === 409) refresh();
      } finally {
        redraw();
      }
    }

    take.addEventListener("click", () => act(take, async () => {
      handoff = await api("POST", tenantPath(`/handoffs/${id}/assign`), { expected_version: handoff.version });
      loadQueue();
    }));
    send.addEventListener("click", () => act(send, async () => {
      const text = draft.value.trim();
      if (!text) { status.className = "muted"; status.textContent = "Write a reply first."; return; }
      if (pending?.text !== text) pending = { text, id: randomId("r-") };
      const corrected = intentFix.value.trim();
      const intent = handoff.context?.intent;
      const payload = { final_text: text, expected_version: handoff.version, client_message_id: pending.id,
                        agent_name: agentName.value.trim() || me().name };
      if (corrected && intent && corrected !== intent) payload.intent_correction = { original_label: intent, corrected_label: corrected };
      const result = await api("POST", tenantPath(`/handoffs/${id}/replies`), payload);
      pending = null;
      if (result.handoff) handoff = result.handoff;
      if (result.message) thread.set(result.message.message_id, result.message);
      draft.value = "";
      status.className = "muted";
      status.textContent = `Sent. Draft ${result.draft_use} (edit ratio ${result.edit_ratio.toFixed(2)}); recorded as feedback.`;
      loadQueue();
    }));
    resolve.addEventListener("click", () => act(resolve, async () => {
      const text = resolution.value.trim() || "Answered by the agent.";
      handoff = await api("POST", tenantPath(`/handoffs/${id}/resolve`), { resolution: text, expected_version: handoff.version });
      loadQueue();
    }));

    function redraw() {
      const closed = handoff.state === "resolved";
      take.disabled = !["waiting", "reopened"].includes(handoff.state) || handoff.assigned_agent_id === me().name;
      send.disabled = closed;
      resolve.disabled = closed;
      clear(facts, ...factsOf(handoff, intentFix));
      clear(transcript, h("h3", {}, "Conversation"), ...conversationOf(handoff, [...thread.values()]));
      transcript.scrollTop = transcript.scrollHeight;
      account?.show(handoff.context?.account_activity);
    }

    async function refresh() {
      try {
        const latest = await api("GET", tenantPath(`/handoffs/${encodeURIComponent(id)}`));
        if (opened?.id !== id) return;
        handoff = latest;
        for (const message of latest.thread || []) thread.set(message.message_id, message);
        redraw();
      } catch { /* the next event tries again */ }
    }

    const c = handoff.context;
    clear(detail,
      facts,
      transcript,
      account?.element,
      c?.ai_attempt ? h("div", { class: "card" }, h("h3", {}, handoff.reason === "approval_required"
        // An approval's candidate is the action the customer said yes to: no confidence went into it.
        ? "Approval requested: what the customer said yes to" : `What the AI tried (confidence ${percent(c.ai_attempt.confidence)})`),
        // The unit's own lines (a procedure's steps, a list, a table) as the customer would read them.
        h("p", { class: "unit-text" }, c.ai_attempt.candidate_answer || "No answer generated."),
        h("p", { class: "muted" }, c.ai_attempt.explanation), citationList(c.ai_attempt.citations)) : null,
      c?.suggested_resolutions?.length ? h("div", { class: "card", id: "resolutions" }, h("h3", {}, "Suggested resolutions"),
        h("ol", {}, c.suggested_resolutions.map((r) => h("li", {}, r.text, citationList(r.sources))))) : null,
      h("div", { class: "card" },
        h("h3", {}, "Reply", c?.draft_method ? h("span", { class: "muted" }, ` (AI draft: ${c.draft_method})`) : null),
        c?.draft_method === "pending"
          ? h("p", { class: "muted" }, "The AI draft is still being written; this one is made from the top suggestion. Reopen the handoff shortly.")
          : null,
        draft,
        h("div", { class: "row" }, h("label", { class: "muted", for: "agent-name" }, "Signed"), agentName, take, send),
        h("div", { class: "row" }, resolution, resolve),
        status));
    redraw();

    // Live: every message of the conversation and every change of the handoff, as they happen.
    const events = handoff.conversation_id
      ? followEvents(tenantPath(`/conversations/${encodeURIComponent(handoff.conversation_id)}/events`), {
        onEvent: (name, data) => {
          if (name === "message" && data.message_id && !thread.has(data.message_id)) {
            thread.set(data.message_id, data);
            redraw();
          }
          // State, version and history come with the handoff itself.
          if (name === "handoff" || name === "message") refresh();
        },
      })
      : null;
    // An action changed here (a decision, a copilot run): the handoff's account activity is read again.
    const onActionsChanged = () => refresh();
    document.addEventListener(ACTIONS_CHANGED, onActionsChanged);
    return { id, close() { events?.stop(); document.removeEventListener(ACTIONS_CHANGED, onActionsChanged); } };
  }

  function factsOf(handoff, intentFix) {
    const c = handoff.context;
    const account = c?.account;
    const wait = waitInWords(handoff.expected_wait_s);
    const open = !["resolved", "waiting_on_customer"].includes(handoff.state);
    return [
      h("div", { class: "row" }, h("h2", {}, c?.summary || `Handoff ${handoff.handoff_id}`),
        handoff.reference ? h("span", { class: "badge reference", id: "reference" }, handoff.reference) : null,
        h("span", { class: `badge state ${handoff.state === "resolved" ? "ok" : ""}`, id: "handoff-state" }, stateLabel(handoff.state)),
        h("span", { class: "badge" }, `P${handoff.priority}`),
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
        h("dt", {}, "Why handed over"), h("dd", {}, c?.ai_attempt_summary || reasonLabel(handoff.reason)),
        open && (wait || handoff.queue_position > 0)
          ? [h("dt", {}, "Expected wait"), h("dd", { id: "expected-wait" },
            [wait, handoff.queue_position > 0 ? `number ${handoff.queue_position} in the queue` : null].filter(Boolean).join(", "))]
          : null,
        handoff.first_replied_at ? [h("dt", {}, "First reply"), h("dd", {}, when(handoff.first_replied_at))] : null,
        handoff.assigned_agent_id ? [h("dt", {}, "Agent"), h("dd", {}, handoff.assigned_agent_id)] : null,
        handoff.resolution ? [h("dt", {}, "Resolution"), h("dd", {}, handoff.resolution)] : null,
        handoff.csat_rating ? [h("dt", {}, "Customer rating"), h("dd", { id: "csat" }, `${handoff.csat_rating} of 5`)] : null),
      handoff.history?.length ? h("details", { class: "history" }, h("summary", {}, `History (${handoff.history.length})`),
        h("ol", { id: "history" }, handoff.history.map((step) => h("li", {},
          h("time", { datetime: step.at }, when(step.at)), ` ${HISTORY_WORDS[step.kind] || step.kind.replace(/_/g, " ")}`,
          step.actor ? h("span", { class: "muted" }, ` · ${step.actor}`) : null)))) : null,
    ];
  }

  /** The AI part of the conversation as handed over, then the thread with the people, by sequence. */
  function conversationOf(handoff, thread) {
    const before = handoff.messages.map((m) => h("div", { class: `msg ${m.role}` },
      h("div", { class: "meta" }, m.role === "assistant" ? "AI assistant" : m.role, m.sent_at ? ` · ${when(m.sent_at)}` : ""), m.text));
    const after = thread.sort((a, b) => a.sequence - b.sequence).map((m) => h("div", {
      class: `msg ${m.role} thread`, "data-message-id": m.message_id,
    }, h("div", { class: "meta" }, m.role === "agent" ? (m.author_name || "agent") : "customer", ` · ${when(m.sent_at)}`), m.text));
    return after.length
      ? [...before, h("div", { class: "divider muted" }, "with the support team"), ...after]
      : before;
  }

  await loadQueue();
  setInterval(loadQueue, QUEUE_REFRESH_MS);
  const wanted = new URLSearchParams(location.search).get("handoff");
  if (wanted) open(wanted);
});
