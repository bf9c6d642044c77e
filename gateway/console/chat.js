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
const AGENT_POLL_MS = 4000;
// Why streamed text was withdrawn, in the customer's words (by the outcome's stable reason codes).
const RETRACTION_REASONS = {
  unsafe_promise: "it promised something the assistant cannot do",
  prompt_injection: "it followed instructions it should have ignored",
  low_confidence: "it could not be verified",
  model_does_not_know: "the knowledge base does not answer it",
  no_knowledge: "the knowledge base does not answer it",
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
  let shownAgentMessages = 0;
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

  async function pollAgentReplies() {
    // Once handed over, the agent's answers arrive in the stored conversation.
    try {
      const history = await api("GET", `/v1/conversations/${encodeURIComponent(conversationId)}?customer_id=${encodeURIComponent(customerId)}`);
      const fromAgents = history.messages.filter((m) => m.role === "agent");
      for (const message of fromAgents.slice(shownAgentMessages)) {
        const el = bubble("agent", message.text);
        el.append(h("div", { class: "meta" }, "support agent"));
      }
      shownAgentMessages = fromAgents.length;
    } catch (e) {
      if (e instanceof ApiError && [404, 501].includes(e.status)) { clearInterval(polling); polling = null; }
    }
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
    const cites = citationList(outcome.citations);
    if (cites) el.append(cites);
    el.append(h("div", { class: "meta" }, confidenceMeta(outcome), ` · ${outcome.decision}`));
    if (outcome.decision === "answered") el.after(ratingButtons(outcome.turn_index));
    if (outcome.decision === "escalated") {
      const why = el.classList.contains("retracted")
        ? "Our AI's answer did not pass its checks, so it was withdrawn"
        : `Our AI was not confident enough to answer on its own (confidence ${percent(outcome.confidence)}, `
          + `threshold ${percent(outcome.threshold || 0.85)})`;
      const prompt = h("div", { class: "notice handoff-prompt", role: "status" },
        h("strong", {}, "Handed to a support expert. "),
        `${why}. An expert has your conversation`
          + (outcome.handoff_id ? ` (reference ${outcome.handoff_id})` : "") + " and will reply here.");
      log.append(prompt);
      if (!polling) polling = setInterval(pollAgentReplies, AGENT_POLL_MS);
    }
    log.scrollTop = log.scrollHeight;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    send.disabled = true;
    bubble("customer", text);
    const answer = assistantBubble();
    try {
      await apiStream(`/v1/conversations/${encodeURIComponent(conversationId)}/messages/stream`,
        { text, customer: { customer_id: customerId }, client_message_id: randomId("m-") },
        (name, data) => {
          if (name === "delta") showDelta(answer, data.text);
          else if (name === "retraction") showRetraction(answer, data);
          else if (name === "outcome") showOutcome(answer, data);
          else if (name === "error") answer.el.append(h("div", { class: "error" }, `\n${data.detail}`));
        });
    } catch (e) {
      answer.el.append(h("div", { class: "error" }, describeError(e)));
    } finally {
      endTyping(answer);
      answer.el.classList.add("done");
      send.disabled = false;
      input.focus();
    }
  });

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
  input.focus();
});
