"use strict";
// The agent console's part for the actions the assistant takes for customers (agent.js places it):
// the approvals waiting for an agent (approve or reject, one click each), and in a handoff the
// conversation's actions with their audit trail. Arguments are shown masked where the API gives them so.

const APPROVALS_REFRESH_MS = 5000;
// Fired on the document when an agent decided: every open actions view reloads.
const ACTIONS_CHANGED = "aftercare:actions-changed";
const ACTION_STATE_WORDS = {
  proposed: "waiting for the customer's yes", awaiting_approval: "awaiting approval", executing: "executing",
  succeeded: "done", failed: "failed", retryable: "will be retried", cancelled: "cancelled", rejected: "rejected",
};
const AUDIT_WORDS = {
  read: "read", refused: "refused", identity_verified: "identity verified", proposed: "proposed",
  confirmed: "customer said yes", approval_requested: "approval requested", approved: "approved",
  rejected: "rejected", executing: "sent to the company's system", executed: "executed", failed: "failed",
  cancelled: "cancelled", reconciled: "reconciled after a restart",
};

function actionStateBadge(action) {
  const tone = { succeeded: "ok", awaiting_approval: "warn", retryable: "warn", failed: "bad", rejected: "bad" }[action.state] || "";
  return h("span", { class: `badge action-state ${tone}` },
    ACTION_STATE_WORDS[action.state] || action.state.replace(/_/g, " "), action.dry_run ? " (dry run)" : "");
}

/** "name: value" lines of an arguments object (masked where the service masked it). */
function argumentList(action) {
  const shown = action.masked_arguments ?? action.arguments;
  if (!shown || typeof shown !== "object") return null;
  return h("dl", { class: "facts arguments" }, Object.entries(shown).map(([name, value]) => [
    h("dt", {}, name), h("dd", {}, typeof value === "string" ? value : JSON.stringify(value))]));
}

/** Whether an error means this gateway has no actions service (the panel then keeps quiet). */
function actionsUnavailable(error) {
  return error instanceof ApiError && error.problem?.reason === "ACTIONS_NOT_CONFIGURED";
}

/** Approve or reject one action; the answer is the action after the decision. */
async function decideAction(actionId, verb, note) {
  const action = await api("POST", tenantPath(`/actions/${encodeURIComponent(actionId)}:${verb}`), { note });
  document.dispatchEvent(new CustomEvent(ACTIONS_CHANGED, { detail: action }));
  return action;
}

/** Note, Approve, Reject and a status line for one action awaiting approval. */
function approvalControls(action, onDecided) {
  const note = h("input", { class: "approval-note", placeholder: "note (optional)", "aria-label": "Note", size: 24 });
  const status = h("p", { class: "muted", role: "status" });
  const approve = h("button", { type: "button", class: "approve" }, "Approve");
  const reject = h("button", { type: "button", class: "reject danger" }, "Reject");
  async function decide(verb) {
    approve.disabled = reject.disabled = true;
    try {
      const after = await decideAction(action.action_id, verb, note.value.trim());
      status.className = after.state === "failed" ? "error" : "muted";
      status.textContent = after.state === "failed"
        ? `Approved, but the company's system refused it: ${after.error?.message || after.error?.reason || ""}`
        : `${verb === "approve" ? "Approved" : "Rejected"}: ${ACTION_STATE_WORDS[after.state] || after.state}.`;
      onDecided();
    } catch (e) {
      status.className = "error";
      status.textContent = e instanceof ApiError && e.status === 409
        ? "Someone decided this one meanwhile (or it was withdrawn); the list is reloaded."
        : describeError(e);
      if (e instanceof ApiError && e.status === 409) onDecided();
      else approve.disabled = reject.disabled = false;
    }
  }
  approve.addEventListener("click", () => decide("approve"));
  reject.addEventListener("click", () => decide("reject"));
  return h("div", { class: "approval-controls" }, h("div", { class: "row" }, note, approve, reject), status);
}

function pendingApprovalItem(action, onDecided) {
  return h("li", { class: "pending-approval", "data-action-id": action.action_id },
    h("div", { class: "row" }, h("strong", {}, action.tool.replace(/_/g, " ")),
      h("span", { class: "muted" }, `customer ${action.customer_id} · conversation ${action.conversation_id} · ${when(action.created_at)}`)),
    h("p", { class: "summary" }, action.summary),
    h("p", { class: "why" }, h("span", { class: "badge warn" }, "needs approval"), " ", action.approval.reasons.join(" ")),
    argumentList(action),
    approvalControls(action, onDecided));
}

/** The "Pending approvals" card, kept current. Returns its element. */
function approvalsPanel() {
  const list = h("ul", { class: "approvals", id: "approval-list" });
  const error = h("p", { class: "error", role: "alert" });
  const count = h("span", { class: "badge", id: "approval-count" }, "0");
  const card = h("section", { class: "card", id: "approvals" },
    h("div", { class: "row" }, h("h2", {}, "Pending approvals"), count,
      h("button", { class: "secondary", type: "button", onclick: () => load() }, "Refresh")),
    error, list);
  // action id -> its item. An item on screen is kept as it is across reloads (a note being typed
  // survives); one decided here stays a moment so that its status line can be read.
  const shown = new Map();
  async function load() {
    try {
      const { actions } = await api("GET", tenantPath("/actions/pending-approvals"));
      error.textContent = "";
      count.textContent = String(actions.length);
      count.className = `badge ${actions.length ? "warn" : ""}`;
      const items = actions.map((action) => shown.get(action.action_id)
        || pendingApprovalItem(action, () => setTimeout(load, 2000)));
      shown.clear();
      actions.forEach((action, index) => shown.set(action.action_id, items[index]));
      clear(list, ...items);
      if (!actions.length) list.append(h("li", { class: "muted" }, "Nothing waiting for approval."));
    } catch (e) {
      if (actionsUnavailable(e)) { card.hidden = true; return; }
      error.textContent = describeError(e);
    }
  }
  load();
  setInterval(() => { if (!card.hidden) load(); }, APPROVALS_REFRESH_MS);
  document.addEventListener(ACTIONS_CHANGED, () => setTimeout(load, 2000));
  return card;
}

function actionItem(action, events) {
  const decidable = action.state === "awaiting_approval";
  return h("li", { class: "conversation-action", "data-action-id": action.action_id },
    h("div", { class: "row" }, h("strong", {}, action.tool.replace(/_/g, " ")), actionStateBadge(action),
      h("span", { class: "muted" }, when(action.created_at))),
    h("p", {}, action.summary),
    action.approval.required
      ? h("p", { class: "muted" }, action.approval.decided_by
        ? `${action.state === "rejected" ? "Rejected" : "Approved"} by ${action.approval.decided_by}${action.approval.note ? `: ${action.approval.note}` : ""}`
        : `Needs approval: ${action.approval.reasons.join(" ")}`)
      : null,
    action.error ? h("p", { class: "error" }, `${action.error.reason}: ${action.error.message}`) : null,
    argumentList(action),
    decidable ? approvalControls(action, () => {}) : null,
    events.length ? h("details", { class: "history audit" }, h("summary", {}, `Audit trail (${events.length})`),
      h("ol", {}, events.map((event) => h("li", {},
        h("time", { datetime: event.occurred_at }, when(event.occurred_at)),
        ` ${AUDIT_WORDS[event.kind] || event.kind.replace(/_/g, " ")}`,
        h("span", { class: "muted" }, ` · ${event.actor.kind}${event.actor.id ? ` ${event.actor.id}` : ""}`,
          event.dry_run ? " · dry run" : "", event.detail ? ` · ${event.detail}` : ""))))) : null);
}

/** A handoff's card: its conversation's actions, each with its audit trail, and the reads and
 * verifications (audit events of no action). Reloads when an agent decides; returns its element. */
function conversationActions(conversationId) {
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const card = h("section", { class: "card", id: "conversation-actions" },
    h("div", { class: "row" }, h("h3", {}, "Actions for the customer"),
      h("button", { class: "secondary", type: "button", onclick: () => load() }, "Refresh")),
    body);
  const query = `conversation_id=${encodeURIComponent(conversationId)}`;

  async function load() {
    try {
      const [{ actions }, { events }] = await Promise.all([
        api("GET", tenantPath(`/actions?${query}`)), api("GET", tenantPath(`/audit?${query}&page_size=500`))]);
      const byAction = new Map();
      for (const event of events) {
        if (!byAction.has(event.action_id)) byAction.set(event.action_id, []);
        byAction.get(event.action_id).push(event);
      }
      const reads = byAction.get("") || [];
      clear(body,
        actions.length ? h("ul", { class: "approvals" }, actions.map((a) => actionItem(a, byAction.get(a.action_id) || [])))
          : h("p", { class: "muted" }, "No actions in this conversation."),
        reads.length ? h("details", { class: "history audit" }, h("summary", {}, `Reads and verifications (${reads.length})`),
          h("ol", {}, reads.map((event) => h("li", {}, h("time", { datetime: event.occurred_at }, when(event.occurred_at)),
            ` ${AUDIT_WORDS[event.kind] || event.kind} ${event.tool}`,
            event.detail ? h("span", { class: "muted" }, ` · ${event.detail}`) : null)))) : null);
    } catch (e) {
      if (actionsUnavailable(e)) { card.hidden = true; return; }
      clear(body, h("p", { class: "error" }, describeError(e)));
    }
  }
  function onChanged() {
    if (!card.isConnected) { document.removeEventListener(ACTIONS_CHANGED, onChanged); return; }
    load();
  }
  document.addEventListener(ACTIONS_CHANGED, onChanged);
  load();
  return card;
}
