"use strict";
// The agent console's part for the customer's account (agent.js places it): the approvals waiting
// for an agent (approve or reject, one click each; the customer is told the outcome), and in a
// handoff the "Account" card: the verified customer, the records read, the actions with their state
// and audit trail, and the copilot form (an agent reads a record or runs a catalog action for the
// customer, with the checks the assistant gets). Arguments are shown masked where the API gives them so.

const APPROVALS_REFRESH_MS = 5000;
// Fired on the document when an action changed here (a decision, a copilot run): every view of it reloads.
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
// Problems that mean this tenant has no account tools here: the account parts then keep quiet.
const NO_ACCOUNT_TOOLS = new Set(["ACTIONS_NOT_CONFIGURED", "CATALOG_NOT_FOUND"]);

function actionStateBadge(action) {
  const tone = { succeeded: "ok", awaiting_approval: "warn", retryable: "warn", failed: "bad", rejected: "bad" }[action.state] || "";
  return h("span", { class: `badge action-state ${tone}`, "data-state": action.state },
    ACTION_STATE_WORDS[action.state] || action.state.replace(/_/g, " "), action.dry_run ? " (dry run)" : "");
}

/** "name: value" lines of an arguments object (masked where the service masked it). */
function argumentList(action) {
  const shown = action.masked_arguments ?? action.arguments;
  if (!shown || typeof shown !== "object") return null;
  return h("dl", { class: "facts arguments" }, Object.entries(shown).map(([name, value]) => [
    h("dt", {}, name), h("dd", {}, typeof value === "string" ? value : JSON.stringify(value))]));
}

/** Whether an error means this tenant has no actions service or catalog here. */
function actionsUnavailable(error) {
  return error instanceof ApiError && NO_ACCOUNT_TOOLS.has(error.problem?.reason);
}

/** What a refusal says: the problem's detail (and its fields), or the network failure. */
function problemText(error) {
  if (!(error instanceof ApiError)) return describeError(error);
  const fields = (error.problem.errors || []).map((e) => `\n  ${e.field}: ${e.description}`).join("");
  return `${error.problem.detail || error.message}${fields}`;
}

function actionsChanged(detail) {
  document.dispatchEvent(new CustomEvent(ACTIONS_CHANGED, { detail }));
}

/** Approve or reject one action; the answer is the action after it and the message the customer got. */
async function decideAction(actionId, verb, note) {
  const outcome = await api("POST", tenantPath(`/actions/${encodeURIComponent(actionId)}:${verb}`),
    { note, agent_name: signedName() });
  actionsChanged(outcome.action);
  return outcome;
}

/** Note, Approve, Reject and a status line for one action awaiting approval. */
function approvalControls(actionId, onDecided) {
  const note = h("input", { class: "approval-note", placeholder: "note (optional)", "aria-label": "Note", size: 24, maxlength: 1000 });
  const status = h("p", { class: "muted", role: "status" });
  const approve = h("button", { type: "button", class: "approve" }, "Approve");
  const reject = h("button", { type: "button", class: "reject danger" }, "Reject");
  async function decide(verb) {
    approve.disabled = reject.disabled = true;
    try {
      const { action, message } = await decideAction(actionId, verb, note.value.trim());
      const told = message ? " The customer was told." : "";
      status.className = action.state === "failed" ? "error" : "muted";
      status.textContent = action.state === "failed"
        ? `Approved, but the company's system refused it: ${action.error_message || ""}.${told}`
        : `${verb === "approve" ? "Approved" : "Rejected"}: ${ACTION_STATE_WORDS[action.state] || action.state}.${told}`;
      onDecided();
    } catch (e) {
      status.className = "error";
      status.textContent = e instanceof ApiError && e.status === 409
        ? `${problemText(e)} The list is reloaded.`
        : problemText(e);
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
    approvalControls(action.action_id, onDecided));
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

function auditTrail(events) {
  return h("details", { class: "history audit" }, h("summary", {}, `Audit trail (${events.length})`),
    h("ol", {}, events.map((event) => h("li", {},
      h("time", { datetime: event.occurred_at }, when(event.occurred_at)),
      ` ${AUDIT_WORDS[event.kind] || event.kind.replace(/_/g, " ")}`,
      h("span", { class: "muted" }, ` · ${event.actor.kind}${event.actor.id ? ` ${event.actor.id}` : ""}`,
        event.dry_run ? " · dry run" : "", event.detail ? ` · ${event.detail}` : "")))));
}

/** One action of the conversation (an account_activity action), with its audit trail. */
function accountActionItem(action, events) {
  const decided = action.decided_by
    ? `${action.state === "rejected" ? "Rejected" : "Approved"} by ${action.decided_by}` : null;
  return h("li", { class: "conversation-action", "data-action-id": action.action_id },
    h("div", { class: "row" }, h("strong", {}, action.tool.replace(/_/g, " ")), actionStateBadge(action),
      h("span", { class: "muted" }, when(action.updated_at))),
    h("p", {}, action.summary),
    action.approval_reasons.length || decided
      ? h("p", { class: "muted approval" }, decided || `Needs approval: ${action.approval_reasons.join(" ")}`)
      : null,
    action.error_message ? h("p", { class: "error" }, action.error_message) : null,
    argumentList(action),
    action.state === "awaiting_approval" ? approvalControls(action.action_id, () => {}) : null,
    events.length ? auditTrail(events) : null);
}

/**
 * A handoff's "Account" card: who was verified, the records read and the actions (newest first)
 * from the handoff's account_activity, each action's audit trail, and the copilot form.
 * show(activity) redraws it from the latest handoff; an action item is kept while it is unchanged
 * (a note being typed survives), and the copilot form is never redrawn. Returns { element, show }.
 */
function accountCard(conversationId) {
  const verified = h("dd", { id: "verified-customer" }, "—");
  const incomplete = h("p", { class: "muted", hidden: true },
    "The actions service did not answer in full: this may not be everything.");
  const records = h("ul", { class: "records", id: "records-read" });
  const actions = h("ul", { class: "approvals", id: "account-actions" });
  let activity = null;
  // Whether the tenant has a catalog here; unknown (null) until the copilot's tools are loaded.
  let catalog = null;
  const copilot = copilotForm(conversationId, () => activity?.verified_customer_id || null,
    (available) => { catalog = available; showOrHide(); });
  // Shown while there is something of the account to show, or a catalog to act with.
  const card = h("section", { class: "card", id: "account", "aria-label": "Account", hidden: true },
    h("div", { class: "row" }, h("h3", {}, "Account"),
      h("button", { class: "secondary", type: "button", onclick: () => actionsChanged(null) }, "Refresh")),
    h("dl", { class: "facts" }, h("dt", {}, "Verified customer"), verified),
    incomplete,
    h("h4", {}, "Records read"), records,
    h("h4", {}, "Actions"), actions,
    copilot.element);
  const items = new Map();  // action id -> [what it showed, its element]
  let drawn = null;

  function showOrHide() {
    const something = activity && (activity.verified_customer_id || activity.records.length || activity.actions.length);
    card.hidden = !(something || catalog);
  }

  async function show(latest) {
    const key = JSON.stringify(latest ?? null);
    if (key === drawn) return;
    drawn = key;
    activity = latest;
    showOrHide();
    // No account activity at all: an escalation without an actions service (the copilot may still act).
    if (!latest) return;
    verified.textContent = latest.verified_customer_id || "nobody verified yet";
    incomplete.hidden = latest.complete;
    clear(records, ...latest.records.map((record) => h("li", {},
      h("time", { datetime: record.read_at }, when(record.read_at)), ` ${record.tool.replace(/_/g, " ")} `,
      h("strong", {}, record.record_id))));
    if (!latest.records.length) records.append(h("li", { class: "muted" }, "None."));
    const events = await auditOf(conversationId);
    if (drawn !== key) return;  // a newer activity came while the trail loaded
    const kept = new Map();
    const shown = latest.actions.map((action) => {
      const what = JSON.stringify(action) + (events.get(action.action_id) || []).length;
      const before = items.get(action.action_id);
      const element = before && before[0] === what ? before[1] : accountActionItem(action, events.get(action.action_id) || []);
      kept.set(action.action_id, [what, element]);
      return element;
    });
    items.clear();
    for (const [id, entry] of kept) items.set(id, entry);
    clear(actions, ...shown);
    if (!shown.length) actions.append(h("li", { class: "muted" }, "No actions in this conversation."));
  }
  return { element: card, show };
}

/** The conversation's audit trail by action id ("" for reads and verifications); empty when unreadable. */
async function auditOf(conversationId) {
  const byAction = new Map();
  try {
    const { events } = await api("GET", tenantPath(`/audit?conversation_id=${encodeURIComponent(conversationId)}&page_size=500`));
    for (const event of events) {
      if (!byAction.has(event.action_id)) byAction.set(event.action_id, []);
      byAction.get(event.action_id).push(event);
    }
  } catch { /* the trail is extra: the actions themselves come with the handoff */ }
  return byAction;
}

/** One input for a property of a tool's JSON schema: strings, numbers, string lists (comma-separated),
 *  enums (a choice), flags; anything else as JSON. Returns { element, value() } (undefined: left empty). */
function schemaField(name, schema, required) {
  const label = `${name}${required ? " *" : ""}`;
  const hint = schema.description || "";
  let input;
  let read;
  if (Array.isArray(schema.enum)) {
    // Nothing chosen until the agent chooses: a required choice is never made for them.
    input = h("select", { name, "aria-label": name },
      h("option", { value: "" }, "—"), schema.enum.map((v) => h("option", { value: String(v) }, String(v))));
    read = () => (input.value === "" ? undefined : schema.enum.find((v) => String(v) === input.value));
  } else if (schema.type === "string") {
    input = h("input", { name, "aria-label": name, placeholder: hint, size: 28 });
    read = () => (input.value.trim() === "" ? undefined : input.value.trim());
  } else if (schema.type === "number" || schema.type === "integer") {
    input = h("input", { name, "aria-label": name, type: "number", step: schema.type === "integer" ? "1" : "any" });
    read = () => (input.value === "" ? undefined : Number(input.value));
  } else if (schema.type === "array" && schema.items?.type === "string") {
    input = h("input", { name, "aria-label": name, placeholder: `comma-separated${hint ? `: ${hint}` : ""}`, size: 28 });
    read = () => {
      const list = input.value.split(",").map((item) => item.trim()).filter(Boolean);
      return list.length ? list : undefined;
    };
  } else if (schema.type === "boolean") {
    input = h("input", { name, "aria-label": name, type: "checkbox" });
    read = () => input.checked;
  } else {
    input = h("textarea", { name, "aria-label": name, placeholder: "JSON", rows: 2 });
    read = () => {
      if (input.value.trim() === "") return undefined;
      try { return JSON.parse(input.value); } catch { throw new Error(`${name} is not valid JSON`); }
    };
  }
  return { element: h("label", { class: "field", title: hint }, h("span", { class: "muted" }, label), input), value: read };
}

/**
 * The copilot: an agent picks a tool of the catalog, fills its arguments, and reads a record or
 * checks an action ("Check" proposes it: its summary and any approval reasons), then runs it for the
 * customer ("Run for the customer" confirms it with the proposal's fingerprint). The customer is the
 * conversation's verified one (customerOf()). onAvailability(false) once the tenant turns out to have
 * no catalog (or an empty one) here, onAvailability(true) otherwise. Returns { element }.
 */
function copilotForm(conversationId, customerOf, onAvailability) {
  const tool = h("select", { id: "copilot-tool", "aria-label": "Tool" }, h("option", { value: "" }, "Loading tools…"));
  const about = h("p", { class: "muted", id: "copilot-about" });
  const fields = h("div", { class: "fields", id: "copilot-fields" });
  const go = h("button", { type: "submit", id: "copilot-go", disabled: true }, "Check");
  const result = h("div", { id: "copilot-result", role: "status" });
  const form = h("form", { class: "copilot", id: "copilot", "aria-label": "Act for the customer" },
    h("h4", {}, "Act for the customer"), h("div", { class: "row" }, tool, go), about, fields, result);
  let tools = new Map();
  let inputs = [];
  // The proposal being checked: the same tool and arguments keep their request id, so a repeated Check
  // returns the same action instead of proposing a second one.
  let proposal = null;

  function selected() { return tools.get(tool.value) || null; }

  function pick() {
    const chosen = selected();
    clear(result);
    if (!chosen) { clear(fields); clear(about); go.disabled = true; return; }
    const schema = chosen.arguments_schema || {};
    const required = new Set(schema.required || []);
    inputs = Object.entries(schema.properties || {}).map(([name, property]) => [name, schemaField(name, property, required.has(name))]);
    // The customer's own id is known: the verified one.
    const userId = inputs.find(([name]) => name === "user_id");
    if (userId && customerOf()) userId[1].element.querySelector("input").value = customerOf();
    clear(fields, ...inputs.map(([, field]) => field.element));
    // The policy's preconditions are checked by the actions service, which names the one that fails.
    clear(about, chosen.description,
      chosen.approval_rules.length ? h("span", {}, ` ${chosen.approval_rules.join(" ")}`) : null);
    go.textContent = chosen.kind === "write" ? "Check" : "Read";
    go.disabled = false;
  }

  function argumentsOf() {
    const values = {};
    for (const [name, field] of inputs) {
      const value = field.value();
      if (value !== undefined) values[name] = value;
    }
    return values;
  }

  function failed(e) {
    clear(result, h("p", { class: "error", role: "alert" }, problemText(e)));
  }

  async function read(chosen, args) {
    const customer = customerOf();
    const reply = await api("POST", tenantPath(`/conversations/${encodeURIComponent(conversationId)}/records:read`),
      { tool: chosen.name, arguments: args, ...(customer ? { customer_id: customer } : {}) });
    clear(result,
      h("p", { class: "muted" }, `${reply.source.tool.replace(/_/g, " ")} ${reply.source.record_id}`,
        reply.verified_customer_id ? ` · verified ${reply.verified_customer_id}` : ""),
      h("pre", { class: "record", id: "copilot-record" }, JSON.stringify(reply.record, null, 2)));
    actionsChanged(null);  // the handoff's records read changed
  }

  async function check(chosen, args) {
    const customer = customerOf();
    if (!customer) {
      clear(result, h("p", { class: "error", role: "alert" },
        "Nobody is verified in this conversation yet: verify the customer with an identity tool first."));
      return;
    }
    const key = JSON.stringify([chosen.name, args, customer]);
    if (proposal?.key !== key) proposal = { key, requestId: randomId("cp-") };
    const action = await api("POST", tenantPath(`/conversations/${encodeURIComponent(conversationId)}/actions`),
      { tool: chosen.name, arguments: args, customer_id: customer, request_id: proposal.requestId });
    const run = h("button", { type: "button", id: "copilot-run" }, "Run for the customer");
    const outcome = h("div", { id: "copilot-outcome" });
    run.addEventListener("click", async () => {
      run.disabled = true;
      try {
        const after = await api("POST", tenantPath(`/actions/${encodeURIComponent(action.action_id)}:confirm`),
          { conversation_id: conversationId, fingerprint: action.fingerprint });
        proposal = null;
        clear(outcome, ranText(after));
        actionsChanged(after);
      } catch (e) {
        run.disabled = false;
        clear(outcome, h("p", { class: "error", role: "alert" }, problemText(e)));
      }
    });
    clear(result, h("div", { class: "notice proposal", "data-action-id": action.action_id },
      h("strong", {}, "Proposed: "), h("span", { class: "summary" }, action.summary),
      action.approval.required
        ? h("p", { class: "why" }, h("span", { class: "badge warn" }, "needs approval"), " ", action.approval.reasons.join(" "))
        : null,
      action.dry_run ? h("p", { class: "muted" }, "Dry run: the company's system will not be changed.") : null,
      h("div", { class: "row" }, run), outcome));
    actionsChanged(action);
  }

  function ranText(action) {
    if (action.state === "succeeded") return h("p", { class: "ok" }, `Done${action.dry_run ? " (dry run)" : ""}: ${action.summary}`);
    if (action.state === "awaiting_approval") {
      return h("p", { class: "muted" }, `Waiting for another agent's approval: ${action.approval.reasons.join(" ")}`);
    }
    if (action.state === "failed") return h("p", { class: "error" }, `Not done, nothing changed: ${action.error?.message || action.error?.reason || ""}`);
    return h("p", { class: "muted" }, `${ACTION_STATE_WORDS[action.state] || action.state}: the company's system has not answered yet; it runs once.`);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = selected();
    if (!chosen) return;
    go.disabled = true;
    try {
      const args = argumentsOf();
      await (chosen.kind === "write" ? check(chosen, args) : read(chosen, args));
    } catch (e) {
      failed(e);
    } finally {
      go.disabled = false;
    }
  });
  tool.addEventListener("change", pick);

  (async () => {
    try {
      const catalog = await api("GET", tenantPath("/tools"));
      tools = new Map(catalog.tools.map((t) => [t.name, t]));
      const group = (kind, label) => h("optgroup", { label },
        catalog.tools.filter((t) => t.kind === kind).map((t) => h("option", { value: t.name }, t.name.replace(/_/g, " "))));
      clear(tool, h("option", { value: "" }, "Pick a tool…"), group("read", "Read"), group("write", "Act"));
      form.hidden = !tools.size;
      onAvailability(tools.size > 0);
    } catch (e) {
      const none = actionsUnavailable(e);
      form.hidden = none;
      if (!none) failed(e);
      onAvailability(!none);
    }
  })();
  return { element: form };
}
