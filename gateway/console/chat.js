"use strict";
// The chat widget as a customer sees it, on a (pretend) product page that also
// reports what the user is looking at, so a Tier-0 tip can appear in the corner.

const PRODUCT_CONTEXT = {
  page: "/settings/api",
  feature: "api",
  recent_errors: ["429 Too Many Requests on POST /v2/events/batch"],
};
// Seconds on the page before the product reports the dwell (Tier 0 never interrupts at once).
const DWELL_S = Number(new URLSearchParams(location.search).get("dwell") ?? 2);
// When the conversation's event stream cannot be held, the stored conversation is polled instead.
const AGENT_POLL_MS = 4000;
const STATE_WORDS = {
  waiting: "Waiting for a support agent",
  assigned: "A support agent is on your conversation",
  waiting_on_customer: "A support agent replied",
  reopened: "Your conversation is open again",
  resolved: "Resolved",
};
// Why streamed text was withdrawn, in the customer's words (by the outcome's stable reason codes).
const RETRACTION_REASONS = {
  unsafe_promise: "it promised something the assistant cannot do",
  prompt_injection: "it followed instructions it should have ignored",
  low_confidence: "it could not be verified",
  model_does_not_know: "the knowledge base does not answer it",
  no_knowledge: "the knowledge base does not answer it",
};

// Why the AI handed over, in the customer's words (by the outcome's stable reason codes).
const HANDOFF_REASONS = {
  low_confidence: (o) => `Our AI was not confident enough to answer on its own (confidence ${percent(o.confidence)}, `
    + `threshold ${percent(o.threshold || 0.85)})`,
  no_knowledge: () => "Our help articles do not answer this",
  model_does_not_know: () => "Our help articles do not answer this",
  human_requested: () => "You asked for a person",
  policy_route: () => "This is one our support team handles",
  llm_unavailable: () => "Our AI is unavailable right now",
  retrieval_unavailable: () => "Our AI is unavailable right now",
  unsafe_promise: () => "This needs a person to act on it",
  prompt_injection: () => "Our AI's answer did not pass its checks",
};

function sessionValue(name, make) {
  let value = sessionStorage.getItem(name);
  if (!value) { value = make(); sessionStorage.setItem(name, value); }
  return value;
}

startPage(async (main) => {
  const customerId = sessionValue("aftercare.customerId", () => randomId("web-"));
  const conversationId = sessionValue("aftercare.conversationId", () => randomId("chat-"));
  const log = h("div", { class: "log", "aria-live": "polite", id: "chat-log" });
  const input = h("input", { name: "message", placeholder: "Ask a question…", autocomplete: "off", "aria-label": "Message", maxlength: 4000 });
  const send = h("button", { type: "submit" }, "Send");
  const form = h("form", {}, input, send);
  const conversationPath = `/v1/conversations/${encodeURIComponent(conversationId)}`;
  const customerQuery = `customer_id=${encodeURIComponent(customerId)}`;
  // The human part of the conversation: the open (or last) handoff, as its events tell it.
  let handoff = null;
  const shownAgentMessages = new Set();
  let events = null;
  let polling = null;

  clear(main,
    h("div", { class: "product" },
      h("section", { class: "card fake-page" },
        h("h1", {}, "Beacon · API settings"),
        h("p", { class: "muted" }, "A product page of the demo tenant. It reports what you look at to the gateway (Tier 0)."),
        h("h3", {}, "Recent errors"),
        PRODUCT_CONTEXT.recent_errors.map((e) => h("p", { class: "err" }, e)),
        h("h3", {}, "API keys"),
        h("p", {}, "Rotate keys, set scopes and watch your rate limits here.")),
      h("section", { class: "card chat", "aria-label": "Chat with support" },
        h("div", { class: "row head" }, h("strong", {}, "Support chat"), h("span", { class: "muted" }, `you are ${customerId}`)),
        log, form)));

  function bubble(role, text) {
    const el = h("div", { class: `msg ${role}` }, text);
    log.append(el);
    log.scrollTop = log.scrollHeight;
    return el;
  }

  /** The same message from the stream and from a poll has the same time and text. */
  function messageKey(message) { return `${Date.parse(message.sent_at) || ""}|${message.text}`; }

  function showAgentMessage(message) {
    const key = messageKey(message);
    if (shownAgentMessages.has(key)) return;
    shownAgentMessages.add(key);
    const el = h("div", { class: "msg agent", "data-message-id": message.message_id || null },
      h("div", { class: "author" }, message.author_name || "Support team"),
      h("span", { class: "text" }, message.text),
      h("div", { class: "meta" }, `support agent · ${clock(message.sent_at)}`));
    log.append(el);
    log.scrollTop = log.scrollHeight;
  }

  /** Once handed over, follow the conversation's events: agents' messages and the handoff's state. */
  function watchConversation() {
    if (events) return;
    events = followEvents(`${conversationPath}/events?${customerQuery}`, {
      onOpen: stopPolling,
      onEvent: (name, data) => {
        if (name === "message" && data.role === "agent") showAgentMessage(data);
        else if (name === "handoff") showHandoffState(data);
      },
      // The stream is not getting through: poll the stored conversation meanwhile (it keeps retrying).
      onTrouble: (_error, failures) => { if (failures >= 2) startPolling(); },
    });
  }

  function startPolling() {
    if (polling) return;
    pollAgentReplies();
    polling = setInterval(pollAgentReplies, AGENT_POLL_MS);
  }

  function stopPolling() {
    if (polling) clearInterval(polling);
    polling = null;
  }

  async function pollAgentReplies() {
    try {
      const history = await api("GET", `${conversationPath}?${customerQuery}`);
      for (const message of history.messages) if (message.role === "agent") showAgentMessage(message);
    } catch { /* the stream is retried anyway; nothing to bother the customer with */ }
  }

  /** What the customer knows of the handoff: reference, state and wait, kept current; the rating once resolved. */
  function showHandoffState(update) {
    handoff = { ...(handoff || {}), ...update };
    for (const status of log.querySelectorAll(".handoff-status")) status.replaceChildren(...statusLine(handoff));
    const rated = handoff.csat_rating > 0;
    if (handoff.state === "resolved" && !rated && !log.querySelector(`.csat[data-handoff="${CSS.escape(handoff.handoff_id)}"]`)) {
      log.append(csatPrompt(handoff));
      log.scrollTop = log.scrollHeight;
    }
    if (handoff.state !== "resolved") for (const open of log.querySelectorAll(".csat:not(.done)")) open.remove();
  }

  function statusLine(state) {
    const wait = ["waiting", "reopened"].includes(state.state) ? waitInWords(state.expected_wait_s) : null;
    const position = state.state === "waiting" && state.queue_position > 0 ? `, number ${state.queue_position} in the queue` : "";
    return [
      h("span", { class: "state", "data-state": state.state }, STATE_WORDS[state.state] || state.state),
      wait ? ` · expected wait ${wait}${position}` : position,
    ];
  }

  /** One click, 1 to 5, after the handoff is resolved: feeds the team's CSAT. */
  function csatPrompt(resolved) {
    const status = h("span", { class: "error", role: "alert" });
    const buttons = [1, 2, 3, 4, 5].map((n) =>
      h("button", { type: "button", class: "secondary", "aria-label": `Rate ${n} of 5`, "data-rating": n }, String(n)));
    const box = h("div", { class: "csat notice", role: "group", "aria-label": "Rate the help you got", "data-handoff": resolved.handoff_id },
      h("div", {}, h("strong", {}, "How did we do? "), "1 = poor, 5 = great"),
      h("div", { class: "row" }, buttons), status);
    for (const button of buttons) {
      button.addEventListener("click", async () => {
        for (const b of buttons) b.disabled = true;
        status.textContent = "";
        try {
          const path = `${conversationPath}/handoffs/${encodeURIComponent(resolved.handoff_id)}/rating?${customerQuery}`;
          const result = await api("POST", path, { rating: Number(button.dataset.rating) });
          handoff.csat_rating = result.csat_rating;
          box.classList.add("done");
          clear(box, h("span", { role: "status" }, `Thank you for your rating (${result.csat_rating} of 5).`));
        } catch (e) {
          for (const b of buttons) b.disabled = false;  // not stored: the customer may try again
          status.textContent = describeError(e);
        }
      });
    }
    return box;
  }

  /** The notice shown when a person takes over: the reference, the wait, and a live status line. */
  function handoffNotice(outcome, why) {
    const reference = outcome.handoff_reference || outcome.handoff_id;
    const wait = waitInWords(outcome.expected_wait_s);
    handoff = { ...(handoff || {}), handoff_id: outcome.handoff_id, reference, state: handoff?.state || "waiting",
                expected_wait_s: outcome.expected_wait_s };
    return h("div", { class: "notice handoff-prompt", role: "status" },
      h("strong", {}, "Handed to a support expert. "),
      `${why}. A person from our support team has your conversation`
        + (reference ? ` (reference ${reference})` : "") + " and will reply here."
        + (wait ? ` Expected wait: ${wait}.` : ""),
      h("div", { class: "handoff-status muted" }, statusLine(handoff)));
  }

  /** "Helpful" / "Not helpful" under an answer: the customer's verdict judges the AI's confidence. */
  function ratingButtons(turnIndex) {
    const status = h("span", { class: "error", role: "alert" });
    const buttons = [["helpful", "Helpful"], ["not_helpful", "Not helpful"]].map(([rating, label]) =>
      h("button", { type: "button", class: "secondary", "data-rating": rating }, label));
    const box = h("div", { class: "rate" }, buttons, status);
    for (const button of buttons) {
      button.addEventListener("click", async () => {
        for (const b of buttons) b.disabled = true;
        status.textContent = "";
        try {
          await api("POST", `/v1/conversations/${encodeURIComponent(conversationId)}/turns/${turnIndex}/rating`,
            { customer_id: customerId, rating: button.dataset.rating });
          clear(box, h("span", { class: "muted", role: "status" }, "Thanks for your feedback"));
        } catch (e) {
          for (const b of buttons) b.disabled = false;  // not stored: the customer may try again
          status.textContent = describeError(e);
        }
      });
    }
    return box;
  }

  /** The assistant's bubble while it streams: its text, then a "typing" state until the outcome. */
  function assistantBubble() {
    const el = bubble("assistant", "");
    const text = h("span", { class: "text" });
    const typing = h("span", { class: "typing", role: "status", "aria-label": "Assistant is typing" },
      h("span", {}), h("span", {}), h("span", {}));
    el.append(text, typing);
    el.classList.add("streaming");
    el.setAttribute("aria-busy", "true");
    return { el, text, typing };
  }

  function endTyping(answer) {
    answer.typing.remove();
    answer.el.classList.remove("streaming");
    answer.el.removeAttribute("aria-busy");
  }

  /** A sentence arrived: add it to what is shown, as it comes. */
  function showDelta(answer, text) {
    answer.text.append(document.createTextNode(text));
    log.scrollTop = log.scrollHeight;
  }

  /** A check failed after text was shown: withdraw it, show the replacement, and say so. */
  function showRetraction(answer, retraction) {
    answer.text.textContent = retraction.replacement;
    answer.el.classList.add("retracted");
    answer.el.querySelector(".retraction-note")?.remove();
    const why = RETRACTION_REASONS[retraction.reason] || retraction.reason.replaceAll("_", " ");
    answer.text.after(h("div", { class: "retraction-note", role: "note", "data-reason": retraction.reason },
      `The earlier text was withdrawn: ${why}.`));
    log.scrollTop = log.scrollHeight;
  }

  function confidenceMeta(outcome) {
    const calibration = outcome.calibrated ? "calibrated" : "uncalibrated";
    const title = outcome.calibrated
      ? `Calibrated for serving configuration ${outcome.configuration_id || "?"}`
      : "No calibration fits this serving configuration: the AI does not answer on its own";
    return h("span", { class: `calibration ${calibration}`, title }, `confidence ${percent(outcome.confidence)} (${calibration})`);
  }

  function showOutcome(answer, outcome) {
    const el = answer.el;
    endTyping(answer);
    answer.text.textContent = outcome.reply;
    // A citation of the customer's own record names the tool that read it (it has no document).
    const cites = citationList((outcome.citations || []).map((c) => (c.record ? { ...c, doc_id: c.record.tool } : c)));
    if (cites) el.append(cites);
    el.append(h("div", { class: "meta" }, confidenceMeta(outcome), ` · ${outcome.decision}`));
    if (outcome.decision === "answered") el.after(ratingButtons(outcome.turn_index));
    if (outcome.decision === "confirm_action" && outcome.pending_action) el.after(actionButtons(outcome.pending_action));
    if (outcome.decision === "acted" && outcome.pending_action?.state === "awaiting_approval") watchConversation();
    if (outcome.decision === "escalated") {
      const why = el.classList.contains("retracted")
        ? "Our AI's answer did not pass its checks, so it was withdrawn"
        : (HANDOFF_REASONS[outcome.decision_reason]
          || ((o) => `Our AI handed over (${(o.decision_reason || "").replaceAll("_", " ")})`))(outcome);
      log.append(handoffNotice(outcome, why));
      watchConversation();
    }
    log.scrollTop = log.scrollHeight;
  }

  /** A proposed action: its summary with Yes / No, which answer exactly this action (its fingerprint).
   *  Any later message withdraws the buttons: the concierge reads it as a yes, a no or a revision. */
  let actionBox = null;
  function actionButtons(pending) {
    const yes = h("button", { type: "button" }, "Yes, go ahead");
    const no = h("button", { type: "button" }, "No");
    actionBox = h("div", { class: "notice pending-action", role: "group", "aria-label": "Confirm the proposed action" },
      h("strong", {}, "Proposed: "), pending.summary, h("div", { class: "row" }, yes, no));
    const answer = (confirmed) => sendMessage(confirmed ? "Yes" : "No",
      { action_id: pending.action_id, fingerprint: pending.fingerprint, confirmed });
    yes.addEventListener("click", () => answer(true));
    no.addEventListener("click", () => answer(false));
    return actionBox;
  }

  /** A person has the conversation: the message went to them, not to the AI. */
  function showForwarded(mine, outcome) {
    mine.append(h("div", { class: "meta delivered" }, "Delivered to the support team"));
    if (outcome.handoff_id && outcome.handoff_id !== handoff?.handoff_id) {
      handoff = { handoff_id: outcome.handoff_id, reference: outcome.handoff_reference, state: "assigned" };
    }
    watchConversation();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    await sendMessage(text);
  });

  /** Send one customer message (with `actionReply`: the answer to a proposed action) and show the outcome. */
  async function sendMessage(text, actionReply) {
    actionBox?.querySelectorAll("button").forEach((button) => { button.disabled = true; });
    actionBox = null;
    send.disabled = true;
    const mine = bubble("customer", text);
    // While a person has the conversation the AI stays quiet: no typing bubble unless it answers after all.
    const withPerson = handoff && handoff.state !== "resolved";
    let answer = withPerson ? null : assistantBubble();
    const answerBubble = () => (answer ??= assistantBubble());
    try {
      await apiStream(`${conversationPath}/messages/stream`,
        { text, customer: { customer_id: customerId }, client_message_id: randomId("m-"),
          ...(actionReply ? { action_reply: actionReply } : {}) },
        (name, data) => {
          if (name === "delta") showDelta(answerBubble(), data.text);
          else if (name === "retraction") showRetraction(answerBubble(), data);
          else if (name === "outcome" && data.decision === "forwarded") {
            answer?.el.remove();
            answer = null;
            showForwarded(mine, data);
          } else if (name === "outcome") showOutcome(answerBubble(), data);
          else if (name === "error") answerBubble().el.append(h("div", { class: "error" }, `\n${data.detail}`));
        });
    } catch (e) {
      answerBubble().el.append(h("div", { class: "error" }, describeError(e)));
    } finally {
      if (answer) {
        endTyping(answer);
        answer.el.classList.add("done");
      }
      send.disabled = false;
      input.focus();
    }
  }

  /** A returning customer (same tab): show the stored conversation, and follow it if a person has it. */
  async function restore() {
    let history;
    try {
      history = await api("GET", `${conversationPath}?${customerQuery}`);
    } catch { return; }  // a new conversation: nothing stored yet
    if (log.childElementCount) return;  // the customer already started typing
    for (const message of history.messages) {
      if (message.role === "agent") showAgentMessage(message);
      else if (["customer", "assistant"].includes(message.role)) bubble(message.role, message.text);
    }
    // An action still waiting for the customer's answer: its Yes / No again.
    const last = history.turns.at(-1)?.outcome;
    if (last?.decision === "confirm_action" && last.pending_action) log.append(actionButtons(last.pending_action));
    const handedOver = history.turns.filter((t) => t.outcome.handoff_id).pop();
    if (handedOver) {
      handoff = { handoff_id: handedOver.outcome.handoff_id, reference: handedOver.outcome.handoff_reference, state: "waiting" };
      log.append(h("div", { class: "notice handoff-prompt", role: "status" },
        h("strong", {}, "With our support team. "),
        handoff.reference ? `Reference ${handoff.reference}.` : "",
        h("div", { class: "handoff-status muted" }, statusLine(handoff))));
      watchConversation();
    }
  }

  // Tier 0: after a short dwell, report the context; show at most one tip, quietly.
  setTimeout(async () => {
    try {
      const reply = await api("POST", tenantPath("/browsing-events"),
        { customer_id: customerId, dwell_seconds: Math.round(DWELL_S), ...PRODUCT_CONTEXT });
      if (reply.suggestion) showSuggestion(reply.suggestion);
    } catch { /* Tier 0 is best effort: never bother the user with its errors */ }
  }, DWELL_S * 1000);

  function showSuggestion(tip) {
    const close = h("button", { class: "close", type: "button", "aria-label": "Dismiss tip" }, "×");
    const card = h("aside", { class: "tier0", role: "complementary", "aria-label": "Suggestion" },
      close,
      h("strong", {}, tip.kind === "tip" ? "Tip: " : "Might help: ", tip.title),
      h("p", {}, tip.snippet),
      /^(https?:\/\/|\/)/.test(tip.url) ? h("a", { href: tip.url, target: "_blank", rel: "noopener" }, "Read the article") : null);
    close.addEventListener("click", async () => {
      card.remove();
      try { await api("POST", tenantPath(`/suggestions/${encodeURIComponent(tip.doc_id)}/dismiss`), { customer_id: customerId }); } catch { /* best effort */ }
    });
    document.body.append(card);
  }
  restore();
  input.focus();
});
