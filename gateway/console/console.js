// aftercare console: what every page shares. No framework, no build step.
// The API key is asked for once and kept in sessionStorage (gone when the tab closes).
"use strict";

const KEY_ITEM = "aftercare.apiKey";
const ME_ITEM = "aftercare.me";
// The name an agent signs with, as the customer sees it (kept across tabs).
const AGENT_NAME_ITEM = "aftercare.agentName";

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
function signedName() { return localStorage.getItem(AGENT_NAME_ITEM) || me().name; }
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

/** Read a Server-Sent Events body; onEvent(name, data, id) per event (comments, e.g. pings, are skipped). */
async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replaceAll("\r\n", "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      let id = null;
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
        else if (line.startsWith("id:")) id = line.slice(3).trim();
      }
      if (data.length) onEvent(event, JSON.parse(data.join("\n")), id);
    }
  }
}

/** POST and read a Server-Sent Events answer; onEvent(name, data) per event. */
async function apiStream(path, body, onEvent) {
  const response = await fetch(path, {
    method: "POST",
    headers: { Authorization: `Bearer ${apiKey()}`, "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  await readEvents(response, onEvent);
}

function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }

/**
 * Follow a GET Server-Sent Events stream for as long as the page wants it: reconnect when it ends
 * or fails (backing off), resuming after the last event seen (Last-Event-ID), so nothing is missed
 * or shown twice. fetch, not EventSource: EventSource cannot send the Authorization header.
 * Callbacks: onEvent(name, data), onOpen(), onTrouble(error, failuresInARow). Returns { stop() }.
 */
function followEvents(path, { onEvent, onOpen, onTrouble }) {
  let lastId = null;
  let stopped = false;
  let failures = 0;
  let controller = null;

  async function connectOnce() {
    controller = new AbortController();
    const headers = { Authorization: `Bearer ${apiKey()}`, Accept: "text/event-stream" };
    if (lastId !== null) headers["Last-Event-ID"] = lastId;
    const response = await fetch(path, { headers, signal: controller.signal, cache: "no-store" });
    if (!response.ok) throw new ApiError(response.status, await problemOf(response));
    if (!(response.headers.get("content-type") || "").startsWith("text/event-stream")) throw new Error("not an event stream");
    failures = 0;
    onOpen?.();
    await readEvents(response, (name, data, id) => {
      if (id !== null) lastId = id;
      onEvent(name, data);
    });
  }

  (async () => {
    while (!stopped) {
      try {
        await connectOnce();
      } catch (error) {
        if (stopped) return;
        failures += 1;
        onTrouble?.(error, failures);
      }
      // A stream the server closed is reopened at once-ish; a failing one ever more slowly (at most 15 s).
      await sleep(failures ? Math.min(15000, 500 * 2 ** failures) : 300);
    }
  })();
  return { stop() { stopped = true; controller?.abort(); } };
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

/** "about 4 min" from seconds; null when nothing useful is known. */
function waitInWords(seconds) {
  if (seconds === null || seconds === undefined || !(seconds > 0)) return null;
  if (seconds < 60) return "under a minute";
  if (seconds < 3600) return `about ${Math.round(seconds / 60)} min`;
  return `about ${Math.round(seconds / 360) / 10} h`;
}

/** A time of day (hh:mm) for a chat message. */
function clock(iso) { return iso ? new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : ""; }
