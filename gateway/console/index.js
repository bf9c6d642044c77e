"use strict";
// The console's front page: where each page is, and for whom.
startPage(async (main) => {
  const who = me();
  const pages = [
    ["chat.html", "Chat widget", "What a customer sees: streamed answers with citations, a Tier-0 tip; after a handoff, the agent's replies as they come and a rating.", "channel"],
    ["agent.html", "Agent console", "The live handoff queue, the context package, the whole conversation as it happens, the AI draft to edit, send and resolve.", "agent"],
    ["insights.html", "Insights", "Per-topic confidence and automation, flagged drops, knowledge gaps, reliability; the intent model and (admins) releases.", "agent"],
    ["outreach.html", "Outreach review", "Risks found in usage, drafts with their evidence: approve, edit or reject.", "agent"],
  ];
  const rank = { channel: 1, agent: 2, admin: 3 };
  clear(main,
    h("h1", {}, "aftercare console"),
    h("div", { class: "cols2" }, pages.map(([href, title, text, role]) => h("div", { class: "card" },
      h("h2", {}, h("a", { href }, title)),
      h("p", {}, text),
      rank[who.role] >= rank[role] ? null : h("p", { class: "muted" }, `Needs a ${role} key.`)))));
});
