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
 * Confidence against automation: contact-weighted bins of mean confidence (x)
 * against the share resolved without a human (y), over every topic-day; bars show
 * volume. A stand-in for a reliability diagram: no RPC yet reports per-answer
 * correctness, so automation is the proxy for "right".
 */
function reliabilityChart(topics) {
  const bins = Array.from({ length: 10 }, () => ({ n: 0, conf: 0, auto: 0 }));
  for (const t of topics) {
    for (const p of t.points) {
      if (!p.contacts) continue;
      const b = bins[Math.min(9, Math.floor(p.mean_confidence * 10))];
      b.n += p.contacts; b.conf += p.mean_confidence * p.contacts; b.auto += p.automation_rate * p.contacts;
    }
  }
  const size = 260, pad = 30;
  const sc = (v) => pad + v * (size - 2 * pad);
  const sy = (v) => size - pad - v * (size - 2 * pad);
  const most = Math.max(1, ...bins.map((b) => b.n));
  const filled = bins.map((b, i) => ({ ...b, i })).filter((b) => b.n);
  return s("svg", { class: "chart", id: "reliability", viewBox: `0 0 ${size} ${size}`, role: "img",
    "aria-label": "Reliability diagram: confidence against outcome" },
    [0, 0.5, 1].map((v) => [s("text", { x: 2, y: sy(v) + 3 }, percent(v)), s("text", { x: sc(v) - 8, y: size - 8 }, percent(v))]),
    s("line", { class: "axis", x1: sc(0), y1: sy(0), x2: sc(1), y2: sy(0) }),
    s("line", { class: "axis", x1: sc(0), y1: sy(0), x2: sc(0), y2: sy(1) }),
    s("line", { class: "diagonal", x1: sc(0), y1: sy(0), x2: sc(1), y2: sy(1) }),
    filled.map((b) => s("rect", { class: "bar", x: sc(b.i / 10) + 2, width: (size - 2 * pad) / 10 - 4,
      y: sy(0) - (b.n / most) * 40, height: (b.n / most) * 40, opacity: 0.25 })),
    filled.length > 1 ? s("path", { class: "confidence", d: filled.map((b, k) => `${k ? "L" : "M"}${sc(b.conf / b.n).toFixed(1)},${sy(b.auto / b.n).toFixed(1)}`).join("") }) : null,
    filled.map((b) => s("circle", { class: "dot", cx: sc(b.conf / b.n), cy: sy(b.auto / b.n), r: 4 },
      s("title", {}, `confidence ${percent(b.conf / b.n)} → resolved by AI ${percent(b.auto / b.n)} (${b.n} contacts)`))));
}

startPage(async (main) => {
  const period = h("select", { "aria-label": "Period" },
    h("option", { value: "14" }, "last 14 days"), h("option", { value: "30", selected: true }, "last 30 days"),
    h("option", { value: "90" }, "last 90 days"));
  const topicsBox = h("div", { class: "cols2", id: "topics" });
  const flagged = h("div", { id: "flagged" });
  const reliability = h("div", { class: "card" });
  const gaps = h("div", { class: "card", id: "gaps" });
  const error = h("p", { class: "error", role: "alert" });
  clear(main,
    h("div", { class: "row" }, h("h1", {}, "Insights"), period),
    error, flagged,
    h("p", { class: "legend" }, h("span", { class: "c" }, "━ mean confidence"), "   ", h("span", { class: "a" }, "┅ automation rate (resolved without a human)")),
    topicsBox,
    h("div", { class: "cols2" }, reliability, gaps));
  period.addEventListener("change", load);

  async function load() {
    const end = new Date();
    const start = new Date(end.getTime() - Number(period.value) * DAY_MS);
    const range = `?start=${encodeURIComponent(start.toISOString())}&end=${encodeURIComponent(end.toISOString())}`;
    error.textContent = "";
    try {
      const [{ topics }, { gaps: gapList }] = await Promise.all([
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
      clear(reliability, h("h2", {}, "Confidence against automation (reliability proxy)"),
        reliabilityChart(topics),
        h("p", { class: "muted" }, "Days of every topic, binned by mean confidence (bars: contacts); "
          + "y is the share resolved without a human, a proxy for being right until per-answer verdicts are recorded."));
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
