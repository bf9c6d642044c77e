"use strict";
// The tenant's intent model on the insights page: which version serves, and (admins) a retrain
// from a labelled file, optionally with the agents' intent corrections, as a long-running
// operation: a live progress bar (the operation is polled every second), Cancel, and the outcome.

const POLL_MS = 1000;

/** Rows of a CSV text (RFC 4180: quoted fields may hold commas, quotes and line breaks). */
function parseCsv(text) {
  const rows = [];
  let row = [], field = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { row.push(field); field = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field); rows.push(row); row = []; field = "";
    } else field += c;
  }
  if (field || row.length) { row.push(field); rows.push(row); }
  return rows.filter((r) => r.some((f) => f.trim()));
}

/** Labelled examples [{text, label}] from a JSONL or CSV file's text; throws with the line at fault. */
function examplesFrom(name, text) {
  text = text.replace(/^\uFEFF/, "");
  if (/\.(jsonl|ndjson|json)$/i.test(name)) {
    return text.split(/\r?\n/).map((line, i) => [line, i + 1]).filter(([line]) => line.trim()).map(([line, n]) => {
      let row;
      try { row = JSON.parse(line); } catch { throw new Error(`${name}:${n}: not valid JSON`); }
      if (typeof row.text !== "string" || typeof row.label !== "string") throw new Error(`${name}:${n}: needs "text" and "label"`);
      return { text: row.text, label: row.label.trim() };
    });
  }
  const [header, ...rows] = parseCsv(text);
  const t = header ? header.indexOf("text") : -1, l = header ? header.indexOf("label") : -1;
  if (t < 0 || l < 0) throw new Error(`${name}:1: the header needs "text" and "label" columns`);
  return rows.map((row) => ({ text: row[t] || "", label: (row[l] || "").trim() }));
}

function outcomeOf(operation) {
  if (operation.response) {
    const r = operation.response;
    return h("p", { class: "outcome", id: "retrain-outcome" },
      h("span", { class: `badge ${r.promoted ? "ok" : "warn"}` }, r.promoted ? "promoted" : "not promoted"), " ",
      `Version ${r.model_version}: validation accuracy ${r.validation_accuracy.toFixed(3)}, ECE ${r.validation_ece.toFixed(3)}. `,
      r.promoted ? "It serves now." : "It validated worse than the serving version, which keeps serving.");
  }
  if (operation.error) {
    const cancelled = operation.error.status === "CANCELLED";
    return h("p", { class: "outcome", id: "retrain-outcome" },
      h("span", { class: `badge ${cancelled ? "warn" : "bad"}` }, cancelled ? "cancelled" : "failed"), " ",
      cancelled ? "The retrain was cancelled; the serving version is unchanged." : operation.error.message);
  }
  return null;
}

/** The intent model card; `box` is filled and kept up to date. */
function intentModelPanel(box) {
  const admin = me().role === "admin";
  const serving = h("p", { id: "intent-model-serving", class: "muted" }, "Loading…");
  const status = h("div", { id: "retrain-status" });
  const error = h("p", { class: "error", role: "alert" });
  const file = h("input", { type: "file", accept: ".jsonl,.ndjson,.json,.csv", "aria-label": "Labelled examples file" });
  const corrections = h("input", { type: "checkbox", id: "with-corrections" });
  const start = h("button", { type: "submit" }, "Retrain intent model");
  const form = admin ? h("form", { id: "retrain-form", class: "row" },
    h("label", {}, "Labelled examples (JSONL or CSV with text, label) ", file),
    h("label", {}, corrections, " add the agents' intent corrections"), start) : null;
  clear(box, h("h2", {}, "Intent model"), serving,
    admin ? h("p", { class: "muted" }, "A retrain trains a new version from these examples alone (every intent, at least 5 examples each); "
      + "it serves only if it validates at least as well as the serving version.") : null,
    form, status, error);

  let following = null;

  async function showServing() {
    try {
      const model = await api("GET", tenantPath("/intent-model"));
      serving.textContent = model.serving_version
        ? `Serving ${model.serving_version} (loaded ${when(model.loaded_at)}); ${model.versions.length} version(s) stored.`
        : "No intent model serves this tenant yet: contacts are routed without an intent.";
    } catch (e) {
      serving.textContent = describeError(e);
    }
  }

  function render(operation) {
    const m = operation.metadata || { progress_percent: 0, step: "", state: "queued" };
    const percent = operation.done && operation.response ? 100 : m.progress_percent;
    const cancel = admin && !operation.done ? h("button", { type: "button", class: "secondary", id: "retrain-cancel",
      onclick: async (event) => {
        event.target.disabled = true;
        try { await api("POST", tenantPath(`/operations/${operation.id}:cancel`)); } catch (e) { error.textContent = describeError(e); }
      } }, "Cancel") : null;
    clear(status,
      h("div", { class: "row" },
        h("progress", { id: "retrain-progress", max: "100", value: String(percent), "aria-label": "Retrain progress" }),
        h("span", { id: "retrain-percent" }, `${percent}%`),
        h("span", { class: "muted", id: "retrain-step" }, operation.done ? m.state : `${m.state}: ${m.step}`),
        m.attempts > 1 ? h("span", { class: "badge warn", title: "A replica stopped while running it; another took it over." },
          `attempt ${m.attempts}`) : null,
        cancel),
      outcomeOf(operation));
    if (start) start.disabled = !operation.done;
  }

  async function follow(operation) {
    const mine = following = {};
    render(operation);
    while (!operation.done && following === mine) {
      await sleep(POLL_MS);
      try {
        operation = await api("GET", tenantPath(`/operations/${operation.id}`));
        error.textContent = "";
      } catch (e) {
        error.textContent = describeError(e);
        continue;
      }
      if (following === mine) render(operation);
    }
    if (operation.done) await showServing();
  }

  if (form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      try {
        const chosen = file.files[0];
        let examples = chosen ? examplesFrom(chosen.name, await chosen.text()) : [];
        if (corrections.checked) {
          const exported = await api("GET", tenantPath("/feedback/intent-corrections"));
          examples = examples.concat(examplesFrom("corrections.jsonl", exported.jsonl));
        }
        if (!examples.length) throw new Error("Choose a file of labelled examples.");
        start.disabled = true;
        await follow(await api("POST", tenantPath("/intent-model:retrain"), { examples }));
      } catch (e) {
        start.disabled = false;
        error.textContent = e instanceof ApiError ? describeError(e) : e.message;
      }
    });
  }

  (async () => {
    await showServing();
    try {
      // The newest retrain: followed when it still runs (after a reload too), its outcome otherwise.
      const { operations } = await api("GET", tenantPath("/operations?page_size=1"));
      if (operations.length) await follow(operations[0]);
    } catch (e) {
      error.textContent = describeError(e);
    }
  })();
}
