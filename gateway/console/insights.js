"use strict";
// The support lead's insights: per-topic confidence and automation over time
// (inline SVG), flagged drops, knowledge gaps, and a reliability diagram.

const W = 520, H = 200, PAD = { left: 34, right: 10, top: 10, bottom: 24 };
const DAY_MS = 86400000;

/** Daily lines of one topic: mean confidence (solid) and automation rate (dashed), both in [0, 1]. */
function topicChart(series) {
  const points = series.points.filter((p) => p.day);
  const times = points.map((p) => Date.parse(p.day));
  const t0 = Math.min(...times), t1 = Math.max(...times, t0 + DAY_MS);
  const x = (t) => PAD.left + ((t - t0) / (t1 - t0)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - v * (H - PAD.top - PAD.bottom);
  const path = (key) => points.map((p, i) => `${i ? "L" : "M"}${x(Date.parse(p.day)).toFixed(1)},${y(p[key]).toFixed(1)}`).join("");
  const ticks = [0, 0.25, 0.5, 0.75, 1];
  const labelEvery = Math.max(1, Math.ceil(points.length / 6));
  return s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `${series.topic}: confidence and automation per day` },
    ticks.map((v) => [s("line", { class: "grid", x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }),
      s("text", { x: 4, y: y(v) + 3 }, `${v * 100}%`)]),
    s("line", { class: "axis", x1: PAD.left, x2: W - PAD.right, y1: y(0), y2: y(0) }),
    points.map((p, i) => (i % labelEvery === 0
      ? s("text", { x: x(Date.parse(p.day)) - 12, y: H - 6 }, p.day.slice(5, 10)) : null)),
    points.length > 1 ? s("path", { class: "confidence", d: path("mean_confidence") }) : null,
    points.length > 1 ? s("path", { class: "automation", d: path("automation_rate") }) : null,
    points.map((p) => s("circle", { class: "dot", cx: x(Date.parse(p.day)), cy: y(p.mean_confidence), r: 2.5 },
      s("title", {}, `${p.day.slice(0, 10)}: confidence ${percent(p.mean_confidence)}, automation ${percent(p.automation_rate)}, ${p.contacts} contacts`))));
}

/**
 * Reliability diagram: judged answers (by agents' replies and customers' ratings)
 * binned by the AI's confidence; x is a bin's mean confidence, y the share judged
 * right. Dots on the diagonal mean the confidence says what it means; dot size and
 * the bars along the bottom show how many answers each bin holds.
 */
function reliabilityChart(reliability) {
  const size = 280, pad = 34;
  const sc = (v) => pad + v * (size - 2 * pad);
  const sy = (v) => size - pad - v * (size - 2 * pad);
  const filled = reliability.bins.filter((b) => b.count);
  const most = Math.max(1, ...filled.map((b) => b.count));
  const radius = (b) => 3 + 5 * Math.sqrt(b.count / most);
  return s("svg", { class: "chart", id: "reliability", viewBox: `0 0 ${size} ${size}`, role: "img",
    "aria-label": "Reliability diagram: confidence against the share of answers judged right" },
    [0, 0.5, 1].map((v) => [s("text", { x: 2, y: sy(v) + 3 }, percent(v)), s("text", { x: sc(v) - 8, y: size - 16 }, percent(v))]),
    s("text", { x: sc(0.5) - 30, y: size - 3 }, "confidence"),
    s("text", { x: 2, y: pad - 16 }, "judged right"),
    s("line", { class: "axis", x1: sc(0), y1: sy(0), x2: sc(1), y2: sy(0) }),
    s("line", { class: "axis", x1: sc(0), y1: sy(0), x2: sc(0), y2: sy(1) }),
    s("line", { class: "diagonal", x1: sc(0), y1: sy(0), x2: sc(1), y2: sy(1) }, s("title", {}, "perfectly calibrated")),
    // Labelled low on the diagonal, where answers are rare (the AI hands low confidence over).
    s("text", { class: "diagonal-label", x: sc(0.08), y: sy(0.08) - 3, transform: `rotate(-45 ${sc(0.08)} ${sy(0.08) - 3})` }, "perfectly calibrated"),
    filled.map((b) => s("rect", { class: "bar", x: sc(b.lower) + 1, width: sc(b.upper) - sc(b.lower) - 2,
      y: sy(0) - (b.count / most) * 30, height: (b.count / most) * 30 })),
    filled.length > 1 ? s("path", { class: "confidence", d: filled.map((b, k) => `${k ? "L" : "M"}${sc(b.mean_confidence).toFixed(1)},${sy(b.accuracy).toFixed(1)}`).join("") }) : null,
    filled.map((b) => [
      s("circle", { class: "dot", cx: sc(b.mean_confidence), cy: sy(b.accuracy), r: radius(b).toFixed(1) },
        s("title", {}, `confidence ${percent(b.lower)}–${percent(b.upper)}: mean ${percent(b.mean_confidence)}, `
          + `${percent(b.accuracy)} judged right (${b.count} answers)`)),
      s("text", { class: "count", x: sc(b.mean_confidence) + radius(b) + 2, y: sy(b.accuracy) - radius(b) }, b.count),
    ]));
}

function reliabilityCaption(r) {
  return `${r.judged} judged answers (${r.judged_by_agents} by agents' replies on handoffs, `
    + `${r.judged_by_customers} rated by customers). Expected calibration error ${(r.ece * 100).toFixed(1)} points: `
    + "the answer-weighted gap between confidence and accuracy (0 is perfectly calibrated).";
}

startPage(async (main) => {
  const period = h("select", { "aria-label": "Period" },
    h("option", { value: "14" }, "last 14 days"), h("option", { value: "30", selected: true }, "last 30 days"),
    h("option", { value: "90" }, "last 90 days"));
  const topicsBox = h("div", { class: "cols2", id: "topics" });
  const flagged = h("div", { id: "flagged" });
  const reliabilityBox = h("div", { class: "card", id: "reliability-card" });
  const gaps = h("div", { class: "card", id: "gaps" });
  const intentModel = h("div", { class: "card", id: "intent-model" });
  // Releases are an admin's: their routes answer other keys 403.
  const releasesBox = me().role === "admin" ? h("div", { class: "card", id: "releases" }) : null;
  const error = h("p", { class: "error", role: "alert" });
  clear(main,
    h("div", { class: "row" }, h("h1", {}, "Insights"), period),
    error, flagged,
    h("p", { class: "legend" }, h("span", { class: "c" }, "━ mean confidence"), "   ", h("span", { class: "a" }, "┅ automation rate (resolved without a human)")),
    topicsBox,
    h("div", { class: "cols2" }, reliabilityBox, gaps),
    intentModel, releasesBox);
  period.addEventListener("change", load);
  intentModelPanel(intentModel);  // models.js
  if (releasesBox) releasesPanel(releasesBox);  // releases.js

  async function load() {
    const end = new Date();
    const start = new Date(end.getTime() - Number(period.value) * DAY_MS);
    const range = `?start=${encodeURIComponent(start.toISOString())}&end=${encodeURIComponent(end.toISOString())}`;
    error.textContent = "";
    try {
      const [{ topics, reliability }, { gaps: gapList }] = await Promise.all([
        api("GET", tenantPath(`/insights/topics${range}`)),
        api("GET", tenantPath("/insights/knowledge-gaps?limit=20")),
      ]);
      const drops = topics.filter((t) => t.confidence_drop_flagged);
      clear(flagged, drops.length ? h("div", { class: "notice", role: "alert" },
        h("strong", {}, "Confidence dropped: "), "the product may have changed while the knowledge base did not.",
        h("ul", {}, drops.map((t) => h("li", {}, h("strong", {}, t.topic), t.confidence_drop_detail ? ` — ${t.confidence_drop_detail}` : "")))) : null);
      clear(topicsBox, ...(topics.length ? topics.map((t) => {
        const total = t.points.reduce((n, p) => n + p.contacts, 0);
        return h("div", { class: "card topic" },
          h("div", { class: "row" }, h("h2", {}, t.topic || "(no intent)"),
            t.confidence_drop_flagged ? h("span", { class: "badge bad" }, "drop flagged") : null,
            h("span", { class: "muted" }, `${total} contacts`)),
          topicChart(t));
      }) : [h("p", { class: "card muted" }, "No contacts in this period.")]));
      clear(reliabilityBox, h("h2", {}, "Reliability of the AI's confidence"),
        ...(reliability.judged
          ? [reliabilityChart(reliability), h("p", { class: "muted", id: "reliability-caption" }, reliabilityCaption(reliability))]
          : [h("p", { class: "muted", id: "reliability-empty" },
            "No judged answers yet: ratings by customers and agents' replies on handoffs fill this chart.")]));
      clear(gaps, h("h2", {}, "Knowledge gaps"),
        gapList.length ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Suggested article"), h("th", {}, "Questions"), h("th", {}, "Last seen"))),
          h("tbody", {}, gapList.map((g) => h("tr", {},
            h("td", {}, h("strong", {}, g.suggested_title), h("div", { class: "muted" }, g.examples.slice(0, 3).map((e) => `“${e}”`).join(" · "))),
            h("td", {}, g.question_count), h("td", {}, when(g.last_seen))))))
          : h("p", { class: "muted" }, "No gaps: every question found an answer."));
    } catch (e) {
      error.textContent = describeError(e);
    }
  }
  await load();
});
