// The rag-agent web UI: a chat over /chat/stream and a documents view over
// /documents. Plain browser JavaScript with no dependencies, so the binary
// can embed it and nothing is fetched from a CDN.
"use strict";

// Every request is relative to the page, which sits at the API's base path.
const api = (path) => new URL(path, document.baseURI).toString();
const STORE_KEY = "rag-agent.chat";
// The API key lives in this tab's sessionStorage only: never in the URL,
// never in localStorage, gone when the tab closes.
const KEY_STORE = "rag-agent.api-key";
const $ = (id) => document.getElementById(id);

// ---------- small helpers ----------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return node;
}

function formatBytes(n) {
  if (n < 1000) return `${n} B`;
  const units = ["KB", "MB", "GB"];
  let value = n;
  let unit = -1;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

function toast(message, kind = "error") {
  const item = el("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" }, message);
  $("toasts").append(item);
  setTimeout(() => item.remove(), kind === "error" ? 8000 : 4000);
}

// The API answers errors as {"error": {"code", "message"}}; a gateway in
// front of it may answer with something else, so fall back to the status.
async function apiError(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) message = body.error.message;
    else if (body && body.message) message = body.message;
  } catch (_) {
    // Not JSON: keep the status line.
  }
  const error = new Error(message);
  error.status = response.status;
  return error;
}

// ---------- credentials ----------

let identity = null;

function withKey(options = {}) {
  const key = sessionStorage.getItem(KEY_STORE);
  if (!key) return options;
  return { ...options, headers: { ...(options.headers || {}), authorization: `Bearer ${key}` } };
}

let keyPrompt = null;

// One prompt at a time, however many requests were refused meanwhile;
// each of them retries with the key it resolves to.
function askForKey(reason) {
  if (keyPrompt) return keyPrompt;
  keyPrompt = new Promise((resolve) => {
    $("key-reason").textContent = reason;
    $("key-dialog").hidden = false;
    $("api-key").value = "";
    $("api-key").focus();
    $("key-form").onsubmit = (e) => {
      e.preventDefault();
      const key = $("api-key").value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY_STORE, key);
      $("key-dialog").hidden = true;
      keyPrompt = null;
      resolve();
    };
  });
  return keyPrompt;
}

// fetch with the key; a 401 asks for a key (again, if the one kept was
// refused) and retries, so every view can simply call the API.
async function authorizedFetch(path, options = {}) {
  for (;;) {
    let response;
    try {
      response = await fetch(api(path), withKey(options));
    } catch (e) {
      throw new Error(`Cannot reach the server (${e.message}).`);
    }
    if (response.status !== 401 || options.body instanceof ReadableStream) return response;
    const error = await apiError(response);
    const hadKey = sessionStorage.getItem(KEY_STORE);
    sessionStorage.removeItem(KEY_STORE);
    await askForKey(hadKey ? `That key was refused: ${error.message}` : "Requests to this server need a key.");
    await refreshIdentity();
  }
}

async function refreshIdentity() {
  let response;
  try {
    response = await fetch(api("me"), withKey());
  } catch (_) {
    return;
  }
  if (!response.ok) return;
  identity = await response.json();
  const who = $("who");
  who.textContent = identity.tenant ? `${identity.tenant} · ${identity.role}` : `operator · ${identity.role}`;
  who.hidden = false;
  $("sign-out").hidden = !sessionStorage.getItem(KEY_STORE);
  applyRole();
}

const can = (what) => !identity || identity.can.includes(what);

// Hide what the role may not do rather than let it fail with a 403.
function applyRole() {
  for (const node of document.querySelectorAll("[data-needs]")) {
    node.hidden = !can(node.dataset.needs);
  }
  for (const button of document.querySelectorAll("button.delete")) button.hidden = !can("write");
}

function forgetKey() {
  sessionStorage.removeItem(KEY_STORE);
  identity = null;
  $("who").hidden = true;
  $("sign-out").hidden = true;
  location.reload();
}

async function request(path, options = {}) {
  const response = await authorizedFetch(path, options);
  if (!response.ok) throw await apiError(response);
  if (response.status === 204) return null;
  return response.json();
}

const postJson = (path, body) =>
  request(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

// ---------- tabs ----------

function showView(name) {
  for (const view of ["chat", "documents"]) {
    const selected = view === name;
    $(`tab-${view}`).setAttribute("aria-selected", String(selected));
    $(`view-${view}`).hidden = !selected;
  }
  if (name === "documents") refreshDocuments();
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
}

// ---------- side panel: a citation's chunk, a document ----------

function openPanel(title, body) {
  $("panel-title").textContent = title;
  $("panel-body").replaceChildren(...body);
  $("panel").hidden = false;
  $("panel-close").focus();
}

function closePanel() {
  $("panel").hidden = true;
}

async function showCitation(source) {
  openPanel(`[${source.citation}] ${source.title}`, [el("p", { class: "muted" }, "Loading…")]);
  try {
    const doc = await request(`documents/${source.document_id}?include_chunks=true`);
    const chunk = (doc.chunks || []).find((c) => c.chunk_id === source.chunk_id);
    openPanel(`[${source.citation}] ${doc.title}`, [
      el("p", { class: "muted" }, `${doc.source} · ${locationLabel(source) ? `${locationLabel(source)} · ` : ""}chunk ${source.chunk_index + 1} of ${doc.chunk_count} · chars ${source.start_char}–${source.end_char} · score ${source.score.toFixed(3)}`),
      el("blockquote", { class: "chunk cited", "data-chunk-id": source.chunk_id }, chunk ? chunk.content : source.snippet),
      el("button", { class: "secondary", onclick: () => showDocument(doc.id, source.chunk_id) }, "Open the document"),
    ]);
  } catch (e) {
    openPanel(`[${source.citation}] ${source.title}`, [
      el("p", { class: "error-text" }, `This source cannot be opened: ${e.message}`),
      el("blockquote", { class: "chunk" }, source.snippet),
    ]);
  }
}

async function showDocument(id, highlightChunk) {
  openPanel("Document", [el("p", { class: "muted" }, "Loading…")]);
  try {
    const doc = await request(`documents/${id}?include_chunks=true`);
    const meta = el("dl", { class: "meta" }, [
      ["Status", badge(doc.status)],
      ["Source", doc.source],
      ["Type", doc.content_type],
      ["Size", formatBytes(doc.size_bytes)],
      ["Chunks", `${doc.chunk_count} (${doc.token_count} tokens)`],
      ["Created", new Date(doc.created_at).toLocaleString()],
      ["Id", doc.id],
    ].flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
    const parts = [meta];
    if (doc.error) parts.push(el("p", { class: "error-text" }, doc.error));
    for (const chunk of doc.chunks || []) {
      const node = el("blockquote", { class: "chunk", "data-chunk-id": chunk.chunk_id },
        el("div", { class: "muted small" }, `#${chunk.chunk_index} · chars ${chunk.start_char}–${chunk.end_char}`),
        chunk.content);
      if (chunk.chunk_id === highlightChunk) node.classList.add("cited");
      parts.push(node);
    }
    openPanel(doc.title, parts);
    const cited = $("panel-body").querySelector(".cited");
    if (cited) cited.scrollIntoView({ block: "center" });
  } catch (e) {
    closePanel();
    toast(`Cannot open the document: ${e.message}`);
  }
}

// ---------- chat ----------

const chat = loadChat();

function loadChat() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORE_KEY));
    if (saved && Array.isArray(saved.turns)) return saved;
  } catch (_) {
    // A damaged entry starts a fresh conversation.
  }
  return { conversationId: null, turns: [] };
}

function saveChat() {
  localStorage.setItem(STORE_KEY, JSON.stringify(chat));
}

function renderConversationLabel() {
  $("conversation-label").textContent = chat.conversationId
    ? `Conversation ${chat.conversationId.slice(0, 8)}`
    : "New conversation";
}

// Answer text with every [n] that names a source turned into a button. A
// citation the server found unsupported by its passage marks the text it
// ends (back to the previous citation or sentence end) and its button.
function renderAnswer(container, text, sources, citations) {
  const byNumber = new Map(sources.map((s) => [s.citation, s]));
  const checks = (citations || []).slice();
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(/\[(\d+)\]/g)) {
    const source = byNumber.get(Number(match[1]));
    if (!source) continue;
    const at = checks.findIndex((c) => c.n === source.citation);
    const check = at >= 0 ? checks.splice(at, 1)[0] : null;
    const before = text.slice(last, match.index);
    const unsupported = check && !check.supported;
    if (unsupported) {
      const cut = Math.max(before.lastIndexOf(". "), before.lastIndexOf("] ")) + 1;
      nodes.push(before.slice(0, cut));
      nodes.push(el("span", { class: "unsupported", title: `Passage [${source.citation}] does not appear to support this (support ${check.score.toFixed(2)})` }, before.slice(cut)));
    } else {
      nodes.push(before);
    }
    const label = unsupported ? `Source ${source.citation} (does not appear to support this): ${source.title}` : `Source ${source.citation}: ${source.title}`;
    nodes.push(el("button", { class: unsupported ? "cite unsupported" : "cite", title: source.title, "aria-label": label, onclick: () => showCitation(source) }, `[${source.citation}]`));
    last = match.index + match[0].length;
  }
  nodes.push(text.slice(last));
  container.replaceChildren(...nodes);
}

// Where in its document a passage is: "p. 3", "sheet Budget", "slide 2",
// or the headings it sits under.
function locationLabel(s) {
  if (s.page) return `p. ${s.page}`;
  if (s.sheet) return `sheet ${s.sheet}`;
  if (s.slide) return `slide ${s.slide}`;
  if (s.section) return s.section;
  return "";
}

function renderSources(list, sources) {
  list.replaceChildren(...sources.map((s) => {
    const where = locationLabel(s);
    return el("li", {},
      el("button", { class: "source", onclick: () => showCitation(s) },
        el("span", { class: "cite-number" }, `[${s.citation}]`), " ", s.title,
        el("span", { class: "muted small" }, ` · ${s.source}${where ? ` · ${where}` : ""}`)));
  }));
}

function toolLine(tool) {
  const state = tool.status === undefined ? "running" : tool.status;
  const input = tool.input ? JSON.stringify(tool.input) : "";
  return el("li", { class: `tool ${state}`, "data-tool-id": tool.id },
    el("span", { class: "tool-state" }, state === "running" ? "…" : state === "success" ? "✓" : "✗"), " ",
    el("code", {}, tool.name), " ",
    el("span", { class: "muted small" }, tool.summary || input));
}

function turnView(turn) {
  const tools = el("ul", { class: "tools" }, (turn.tools || []).map(toolLine));
  const answer = el("div", { class: "answer" });
  const sources = el("ol", { class: "sources" });
  const footer = el("div", { class: "muted small footer" }, turn.footer || "");
  renderAnswer(answer, turn.answer || "", turn.sources || [], turn.citations);
  renderSources(sources, turn.sources || []);
  const node = el("li", { class: "turn" },
    el("div", { class: "question" }, turn.question),
    el("div", { class: "reply" }, tools, answer, sources, footer));
  if (turn.error) node.querySelector(".reply").append(el("p", { class: "error-text" }, turn.error));
  return { node, tools, answer, sources, footer };
}

function renderTranscript() {
  $("transcript").replaceChildren(...chat.turns.map((t) => turnView(t).node));
  renderConversationLabel();
}

// Reads server-sent events from a fetch response as they arrive.
async function* readEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

let busy = false;

async function ask(question) {
  if (busy) return;
  busy = true;
  $("send").disabled = true;
  const turn = { question, answer: "", sources: [], tools: [] };
  chat.turns.push(turn);
  const view = turnView(turn);
  view.node.classList.add("streaming");
  $("transcript").append(view.node);
  view.node.scrollIntoView({ block: "end" });
  const body = { message: question };
  if (chat.conversationId) body.conversation_id = chat.conversationId;
  try {
    const response = await authorizedFetch("chat/stream", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream" },
      body: JSON.stringify(body),
    });
    if (!response.ok) throw await apiError(response);
    let finished = false;
    for await (const { event, data } of readEvents(response)) {
      if (event === "delta") {
        turn.answer += data.text;
        view.answer.textContent = turn.answer;
      } else if (event === "tool_use") {
        const tool = { id: data.id, name: data.name, input: data.input };
        turn.tools.push(tool);
        view.tools.append(toolLine(tool));
      } else if (event === "tool_result") {
        const tool = turn.tools.find((t) => t.id === data.id) || { id: data.id, name: data.name };
        Object.assign(tool, { status: data.status, summary: data.summary });
        const line = view.tools.querySelector(`[data-tool-id="${CSS.escape(data.id)}"]`);
        if (line) line.replaceWith(toolLine(tool));
      } else if (event === "sources") {
        turn.sources = data.sources;
      } else if (event === "citations") {
        // The answer as checked: markers naming no passage are gone.
        turn.answer = data.answer;
        turn.citations = data.citations;
        turn.groundedness = data.groundedness;
      } else if (event === "done") {
        finished = true;
        chat.conversationId = data.conversation_id;
        const grounded = typeof turn.groundedness === "number" ? ` · ${Math.round(turn.groundedness * 100)}% grounded` : "";
        turn.footer = `${data.model_id} · ${data.latency_ms} ms · ${data.token_usage.total_tokens} tokens${grounded}`;
      } else if (event === "error") {
        finished = true;
        turn.error = data.message || "The answer failed.";
      }
    }
    if (!finished) turn.error = "The connection closed before the answer was complete.";
  } catch (e) {
    turn.error = e.message;
    toast(e.message);
  } finally {
    const done = turnView(turn);
    view.node.replaceWith(done.node);
    done.node.scrollIntoView({ block: "end" });
    saveChat();
    renderConversationLabel();
    busy = false;
    $("send").disabled = false;
    $("question").focus();
  }
}

function newConversation() {
  chat.conversationId = null;
  chat.turns = [];
  saveChat();
  renderTranscript();
  $("question").focus();
}

// ---------- documents ----------

let pollTimer = null;
// Uploads, deletes and the poll each ask for a refresh, and their answers
// can come back out of order: only the newest request may render and
// schedule the next poll, so an older list never overwrites a newer one
// and polls never run in parallel.
let refreshSeq = 0;

function badge(status) {
  return el("span", { class: `badge ${status.toLowerCase()}` }, status);
}

async function refreshDocuments() {
  clearTimeout(pollTimer);
  const mine = ++refreshSeq;
  let items = [];
  try {
    let cursor = null;
    do {
      const page = await request(`documents?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
      if (mine !== refreshSeq) return;
      items = items.concat(page.items);
      cursor = page.next_cursor;
    } while (cursor && items.length < 5000);
  } catch (e) {
    if (mine === refreshSeq) toast(`Cannot list documents: ${e.message}`);
    return;
  }
  renderDocuments(items);
  // Keep the statuses live while anything is still being indexed.
  if (items.some((d) => d.status === "PENDING" || d.status === "PROCESSING")) {
    pollTimer = setTimeout(refreshDocuments, 1000);
  }
}

function renderDocuments(items) {
  const counts = { INDEXED: 0, PROCESSING: 0, PENDING: 0, FAILED: 0 };
  for (const d of items) counts[d.status] = (counts[d.status] || 0) + 1;
  $("counts").replaceChildren(
    el("span", {}, items.length === 1 ? "1 document" : `${items.length} documents`),
    ...Object.entries(counts).filter(([, n]) => n > 0).map(([status, n]) => el("span", {}, badge(status), ` ${n}`)));
  $("documents-empty").hidden = items.length > 0;
  $("documents").querySelector("tbody").replaceChildren(...items.map((d) =>
    el("tr", { "data-id": d.id },
      el("td", {}, el("button", { class: "link open", onclick: () => showDocument(d.id) }, d.title),
        d.error ? el("div", { class: "error-text small" }, d.error) : null),
      el("td", {}, badge(d.status)),
      el("td", { class: "num" }, d.chunk_count),
      el("td", { class: "num" }, formatBytes(d.size_bytes)),
      el("td", { class: "num" }, can("write")
        ? el("button", { class: "danger small delete", "aria-label": `Delete ${d.title}`, onclick: () => confirmDelete(d) }, "Delete")
        : null))));
}

function askConfirmation(text) {
  return new Promise((resolve) => {
    $("confirm-text").textContent = text;
    $("confirm").hidden = false;
    $("confirm-cancel").focus();
    const finish = (answer) => {
      $("confirm").hidden = true;
      $("confirm-ok").onclick = null;
      $("confirm-cancel").onclick = null;
      resolve(answer);
    };
    $("confirm-ok").onclick = () => finish(true);
    $("confirm-cancel").onclick = () => finish(false);
  });
}

async function confirmDelete(doc) {
  if (!(await askConfirmation(`Delete “${doc.title}” with its chunks and vectors? This cannot be undone.`))) return;
  try {
    await request(`documents/${doc.id}`, { method: "DELETE" });
    toast(`Deleted “${doc.title}”.`, "info");
  } catch (e) {
    toast(`Cannot delete: ${e.message}`);
  }
  refreshDocuments();
}

// Files past this are declared, then sent straight to where the answer
// says (S3 itself on AWS, past API Gateway's 10 MB request limit), with
// progress; smaller ones go in one request.
const DIRECT_UPLOAD_ABOVE = 5 * 1024 * 1024;

async function uploadFiles(files) {
  const jobs = [...files].map(async (file) => {
    const row = el("li", {}, `${file.name} (${formatBytes(file.size)}) `, el("span", { class: "muted" }, "uploading…"));
    $("uploads").append(row);
    try {
      const result = file.size > DIRECT_UPLOAD_ABOVE ? await directUpload(file, row.lastChild) : await formUpload(file);
      row.lastChild.replaceWith(
        result.duplicate ? el("span", { class: "muted" }, "already indexed") : badge(result.document.status),
      );
    } catch (e) {
      row.lastChild.replaceWith(el("span", { class: "error-text" }, e.message));
      toast(`${file.name}: ${e.message}`);
    }
    setTimeout(() => row.remove(), 6000);
  });
  // Show each new document as soon as it is accepted.
  for (const job of jobs) job.then(refreshDocuments);
  await Promise.all(jobs);
}

function formUpload(file) {
  const form = new FormData();
  form.append("file", file, file.name);
  return request("documents/upload", { method: "POST", body: form });
}

// Declares the file, PUTs it to the upload URL (with the headers it is
// signed for, and no key: the URL is its own credential), and answers as
// the form upload does. Storage answers with no document: the promised one
// appears in the list once the ingest queue has taken it.
async function directUpload(file, status) {
  const type = file.type || "application/octet-stream";
  const ticket = await postJson("documents/uploads", { filename: file.name, content_type: type, size: file.size });
  const xhr = await new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(ticket.method, ticket.upload_url);
    for (const [name, value] of Object.entries(ticket.headers)) {
      // The browser sets these itself and refuses to be told.
      if (name !== "content-length" && name !== "host") xhr.setRequestHeader(name, value);
    }
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) status.textContent = `uploading… ${Math.floor((e.loaded * 100) / e.total)}%`;
    };
    xhr.onload = () => resolve(xhr);
    xhr.onerror = () => reject(new Error("the upload did not reach storage"));
    xhr.send(file);
  });
  let body = null;
  try {
    body = JSON.parse(xhr.responseText);
  } catch (_) {
    // Storage answers with an empty body or XML.
  }
  if (xhr.status < 200 || xhr.status >= 300) {
    throw new Error((body && body.error && body.error.message) || `the upload was refused (${xhr.status})`);
  }
  if (body && body.document) return body;
  return { duplicate: false, document: { id: ticket.document_id, status: "PENDING" } };
}

async function ingest(body, form) {
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    const result = await postJson("documents/ingest", body);
    toast(result.duplicate ? `Already indexed: “${result.document.title}”.` : `Added “${result.document.title}”.`, "info");
    form.reset();
  } catch (e) {
    toast(`Cannot ingest: ${e.message}`);
  } finally {
    button.disabled = false;
    refreshDocuments();
  }
}

// ---------- health ----------

async function refreshHealth() {
  try {
    const health = await request("health");
    const node = $("health");
    node.textContent = `${health.status} · ${health.chat_model}`;
    node.className = `health ${health.status}`;
    node.title = [`version ${health.version}`, ...health.warnings].join("\n");
    // The embedding model loads after the server is up; look again soon.
    if (health.status === "starting") setTimeout(refreshHealth, 1000);
  } catch (e) {
    $("health").textContent = "unreachable";
    $("health").className = "health down";
  }
}

// ---------- wiring ----------

function wire() {
  $("tab-chat").addEventListener("click", () => showView("chat"));
  $("tab-documents").addEventListener("click", () => showView("documents"));
  $("new-conversation").addEventListener("click", newConversation);
  $("ask").addEventListener("submit", (e) => {
    e.preventDefault();
    const question = $("question").value.trim();
    if (!question || busy) return;
    $("question").value = "";
    ask(question);
  });
  $("question").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("ask").requestSubmit();
    }
  });
  $("panel-close").addEventListener("click", closePanel);
  $("sign-out").addEventListener("click", forgetKey);
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape") return;
    if (!$("confirm").hidden) $("confirm-cancel").click();
    else closePanel();
  });
  const dropzone = $("dropzone");
  const input = $("file-input");
  dropzone.addEventListener("click", () => input.click());
  dropzone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      input.click();
    }
  });
  input.addEventListener("change", () => {
    if (input.files.length) uploadFiles(input.files);
    input.value = "";
  });
  dropzone.addEventListener("dragover", (e) => {
    e.preventDefault();
    dropzone.classList.add("over");
  });
  dropzone.addEventListener("dragleave", () => dropzone.classList.remove("over"));
  dropzone.addEventListener("drop", (e) => {
    e.preventDefault();
    dropzone.classList.remove("over");
    if (e.dataTransfer.files.length) uploadFiles(e.dataTransfer.files);
  });
  $("ingest-url").addEventListener("submit", (e) => {
    e.preventDefault();
    ingest({ url: $("url").value.trim() }, e.target);
  });
  $("ingest-text").addEventListener("submit", (e) => {
    e.preventDefault();
    const body = { content: $("text-content").value, content_type: "text/plain" };
    const title = $("text-title").value.trim();
    if (title) body.title = title;
    ingest(body, e.target);
  });
}

async function start() {
  wire();
  renderTranscript();
  showView(location.hash === "#documents" ? "documents" : "chat");
  refreshHealth();
  // Without auth the server answers /me at once; with it, a 401 here asks
  // for the key before anything else is shown.
  await authorizedFetch("me");
  await refreshIdentity();
  // The server may have forgotten the conversation (a new data directory):
  // then start a new one rather than send an id it will not find.
  if (chat.conversationId) {
    try {
      const stored = await request(`conversations/${chat.conversationId}`);
      if (stored.messages.length === 0) newConversation();
    } catch (e) {
      if (e.status === 404) newConversation();
    }
  }
}

start();
