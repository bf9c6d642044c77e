// aftercare console: what every page shares. No framework, no build step.
// The API key is asked for once and kept in sessionStorage (gone when the tab closes).
"use strict";

const KEY_ITEM = "aftercare.apiKey";
const ME_ITEM = "aftercare.me";

/** Build an element: h("p", {class: "x", onclick: f}, "text", child). Text is never parsed as HTML. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An SVG element with attributes (charts). */
function s(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs || {})) el.setAttribute(name, String(value));
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function clear(el, ...children) {
  el.replaceChildren(...children.filter((c) => c !== null && c !== undefined));
  return el;
}

/** An error the API answered with (problem+json) or a network failure. */
class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

function describeError(error) {
  if (error instanceof ApiError) {
    const fields = (error.problem.errors || []).map((e) => `\n  ${e.field}: ${e.description}`).join("");
    const retry = error.problem.status === 429 ? " (rate limited)" : "";
    return `${error.problem.title || "Error"}${retry}: ${error.message}${fields}`;
  }
  return `Network error: ${error.message}`;
}

function apiKey() { return sessionStorage.getItem(KEY_ITEM); }
function me() { return JSON.parse(sessionStorage.getItem(ME_ITEM) || "null"); }
function tenantPath(rest) { return `/v1/tenants/${encodeURIComponent(me().tenant_id)}${rest}`; }

async function problemOf(response) {
  try { return await response.json(); } catch { return { status: response.status, detail: response.statusText }; }
}

/** Call the API with the key; JSON in and out; throws ApiError on a problem. */
async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${apiKey()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!response.ok) {
    const problem = await problemOf(response);
    if (response.status === 401) forgetKey();
    throw new ApiError(response.status, problem);
  }
  return response.json();
}

/** POST and read a Server-Sent Events answer; onEvent(name, data) per event. */
async function apiStream(path, body, onEvent) {
  const response = await fetch(path, {
    method: "POST",
    headers: { Authorization: `Bearer ${apiKey()}`, "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(event, JSON.parse(data.join("\n")));
    }
  }
}

function forgetKey() {
  sessionStorage.removeItem(KEY_ITEM);
  sessionStorage.removeItem(ME_ITEM);
}

const PAGES = [
  ["chat.html", "Chat widget"],
  ["agent.html", "Agent console"],
  ["insights.html", "Insights"],
  ["outreach.html", "Outreach review"],
];

function renderHeader() {
  const here = location.pathname.split("/").pop() || "index.html";
  const who = me();
  const header = h("header", { class: "top" },
    h("a", { class: "brand", href: "./" }, "aftercare"),
    PAGES.map(([href, label]) => h("a", { href, "aria-current": here === href ? "page" : null }, label)),
    h("span", { class: "who" },
      who ? `${who.name} · ${who.role} · tenant ${who.tenant_id} ` : "",
      who ? h("button", { class: "secondary", type: "button", onclick: () => { forgetKey(); location.reload(); } }, "Forget key") : ""));
  document.body.prepend(header);
}

/** Ask for the key if there is none, learn its tenant, then run the page. */
async function startPage(run) {
  renderHeader();
  const main = document.querySelector("main");
  if (apiKey() && me()) { await run(main); return; }
  const input = h("input", { type: "password", name: "api-key", autocomplete: "off", placeholder: "ak_...", "aria-label": "API key" });
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", { id: "key-panel", class: "card" },
    h("h2", {}, "API key"),
    h("p", { class: "muted" }, "Paste an API key (python -m gateway.keys create ...). It is kept for this tab only."),
    input, error, h("button", { type: "submit" }, "Use key"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_ITEM, input.value.trim());
    try {
      sessionStorage.setItem(ME_ITEM, JSON.stringify(await api("GET", "/v1/me")));
      location.reload();
    } catch (e) {
      forgetKey();
      error.textContent = describeError(e);
    }
  });
  clear(main, form);
  input.focus();
}

function percent(x) { return `${Math.round(x * 100)}%`; }
function when(iso) { return iso ? new Date(iso).toLocaleString() : "—"; }

function citationList(citations) {
  if (!citations || !citations.length) return null;
  return h("ol", { class: "citations" }, citations.map((c) => h("li", {},
    /^https?:\/\//.test(c.url) ? h("a", { href: c.url, target: "_blank", rel: "noopener" }, c.title || c.doc_id) : (c.title || c.doc_id),
    h("span", { class: "muted" }, ` (${c.doc_id})`))));
}

function randomId(prefix) {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
