// Drives the web UI in Debian's headless Chromium the way a person would:
// upload files, wait for INDEXED, ask a question, watch the cited answer
// stream in, open the citation and its document, reload, delete. Saves a
// screenshot of every step. Started by crates/rag-agent/tests/e2e/ui.rs,
// which runs the server and checks the summary this prints last.
//
//   UI_BASE_URL=http://127.0.0.1:PORT UI_FILES=$'a.html\nb.md' \
//   UI_SCREENSHOTS=target/ui-screenshots node tests/ui/ui.test.mjs
import { check, launch, screenshots } from "./browser.mjs";

const base = process.env.UI_BASE_URL.replace(/\/$/, "");
const shots = process.env.UI_SCREENSHOTS;
const files = process.env.UI_FILES.split("\n").filter(Boolean);
const question = process.env.UI_QUESTION;

// The browser logs every failed request as a console error; the one the
// error step provokes is expected, so requests are counted apart from
// errors in the page's own script.
const summary = { steps: [], console_errors: [], failed_requests: [], partial_answers: [], requests: [], unanswered: [] };
const shot = screenshots(shots, summary);
const browser = await launch();

let failed = null;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) summary.console_errors.push(m.text());
  });
  page.on("response", (r) => { if (r.status() >= 400) summary.failed_requests.push(`${r.status()} ${r.request().method()} ${r.url()}`); });
  // Every request the page makes, and every one that never got an answer
  // (blocked by the content security policy, refused, aborted): the test
  // asserts that all stay on the server's own address.
  page.on("request", (r) => summary.requests.push(r.url()));
  page.on("requestfailed", (r) => summary.unanswered.push({ url: r.url(), error: r.failure()?.errorText ?? "" }));
  page.on("pageerror", (e) => summary.console_errors.push(String(e)));
  // Indexing competes with whatever else the machine runs (CI indexes the
  // Rust book twice beside this test), so waits are generous.
  page.setDefaultTimeout(120_000);

  // Home: the chat view and a healthy service.
  await page.goto(`${base}/`);
  await page.waitForSelector("#health.ok");
  await shot(page, "home");

  // Documents: upload several files through the picker.
  await page.click("#tab-documents");
  await page.setInputFiles("#file-input", files);
  await page.waitForFunction((n) => document.querySelectorAll("#documents tbody tr").length === n, files.length);
  await shot(page, "uploaded");
  await page.waitForFunction(
    (n) => document.querySelectorAll("#documents tbody .badge.indexed").length === n,
    files.length, { timeout: 180_000 });
  const counts = await page.textContent("#counts");
  check(counts.includes(`${files.length} documents`), `counts say ${counts}`);
  summary.indexed = files.length;
  await shot(page, "indexed");

  // Chat: Shift+Enter is a new line, Enter sends.
  await page.click("#tab-chat");
  await page.click("#question");
  await page.keyboard.type("first line");
  await page.keyboard.press("Shift+Enter");
  check((await page.inputValue("#question")) === "first line\n", "Shift+Enter adds a line");
  check((await page.locator(".turn").count()) === 0, "Shift+Enter does not send");
  await page.fill("#question", question);
  await page.keyboard.press("Enter");

  // Watch the answer grow while it streams, and the tool call appear.
  await page.waitForSelector(".turn.streaming");
  const seen = new Set();
  let streamingShot = false;
  while (await page.locator(".turn.streaming").count()) {
    const text = await page.locator(".turn.streaming .answer").textContent().catch(() => null);
    if (text) seen.add(text);
    // One screenshot mid-answer; under load the same partial text can be
    // read several times in a row.
    if (seen.size >= 2 && !streamingShot) {
      streamingShot = true;
      await shot(page, "streaming");
    }
    await page.waitForTimeout(40);
  }
  summary.partial_answers = [...seen].sort((a, b) => a.length - b.length);
  const tool = await page.textContent(".turn .tool");
  check(tool.includes("vector_search"), `tool activity shows ${tool}`);
  check((await page.locator(".turn .tool.success").count()) >= 1, "the tool call finished");
  summary.tool = tool.trim();
  const answer = await page.textContent(".turn .answer");
  summary.answer = answer;
  check((await page.locator(".turn .answer .cite").count()) >= 1, `a citation button in ${answer}`);
  check((await page.locator(".turn .sources li").count()) >= 1, "a sources list");
  // The server found the second sentence unsupported by its passage (the
  // first, a paraphrase, may be flagged too: the check is lexical).
  check((await page.locator(".turn .answer span.unsupported").count()) >= 1, "a sentence marked unsupported");
  summary.unsupported = (await page.locator(".turn .answer span.unsupported").allTextContents()).join(" | ");
  summary.groundedness_footer = await page.textContent(".turn .footer");
  await shot(page, "answer");

  // The citation opens its chunk, then its document.
  await page.click(".turn .answer .cite");
  await page.waitForSelector("#panel:not([hidden]) blockquote.cited");
  summary.citation_title = await page.textContent("#panel-title");
  summary.cited_chunk = (await page.textContent("#panel blockquote.cited")).slice(0, 200);
  await shot(page, "citation");
  await page.click("#panel-body button");
  await page.waitForSelector("#panel .meta");
  await page.waitForSelector("#panel blockquote.cited");
  summary.document_chunks = await page.locator("#panel blockquote.chunk").count();
  await shot(page, "document");
  await page.keyboard.press("Escape");
  check(await page.locator("#panel").isHidden(), "Escape closes the panel");

  // The conversation survives a reload.
  const label = await page.textContent("#conversation-label");
  await page.reload();
  await page.waitForSelector(".turn .answer .cite");
  check((await page.textContent("#conversation-label")) === label, "same conversation after reload");
  check((await page.locator(".turn").count()) === 1, "the turn is still there");
  summary.conversation = label;
  await shot(page, "reloaded");

  // New conversation clears the transcript and forgets the id.
  await page.click("#new-conversation");
  check((await page.locator(".turn").count()) === 0, "New conversation clears the transcript");
  check((await page.textContent("#conversation-label")) === "New conversation", "and the label");
  await page.reload();
  check((await page.locator(".turn").count()) === 0, "the new conversation survives a reload");

  // Drag and drop: a file dropped on the zone is uploaded.
  await page.click("#tab-documents");
  // The table fills in after the tab opens; counting before that (CI under
  // load) would wait for the wrong number of rows.
  const before = summary.indexed;
  await page.waitForFunction((n) => document.querySelectorAll("#documents tbody tr").length === n, before);
  await page.evaluate(() => {
    const data = new DataTransfer();
    data.items.add(new File(["Dropped files are indexed like picked ones."], "dropped.txt", { type: "text/plain" }));
    document.getElementById("dropzone").dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
  });
  await page.waitForFunction((n) => document.querySelectorAll("#documents tbody tr").length === n + 1, before);
  await page.waitForFunction(() => [...document.querySelectorAll("#documents tbody tr")].some((r) => r.textContent.includes("dropped") && r.querySelector(".badge.indexed")));

  // A file past 5 MB is declared and PUT where the answer says (here the
  // server itself, with a token), with progress, then indexed like any.
  await page.evaluate(() => {
    const text = "BT /F1 12 Tf 72 720 Td (The large manual says the pump valve is checked weekly.) Tj ET";
    const parts = ["%PDF-1.4\n"];
    const offsets = [];
    let length = parts[0].length;
    const object = (body) => {
      offsets.push(length);
      const chunk = `${offsets.length} 0 obj\n${body}\nendobj\n`;
      parts.push(chunk);
      length += chunk.length;
    };
    object("<< /Type /Catalog /Pages 2 0 R >>");
    object("<< /Type /Pages /Kids [4 0 R] /Count 1 >>");
    object("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>");
    object("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents 5 0 R >>");
    object(`<< /Length ${text.length + 1} >>\nstream\n${text}\nendstream`);
    // Six megabytes that no page draws, as in a scanned manual.
    const padding = "x".repeat(6 * 1024 * 1024);
    object(`<< /Length ${padding.length} >>\nstream\n${padding}\nendstream`);
    const xref = length;
    const entries = offsets.map((o) => `${String(o).padStart(10, "0")} 00000 n \n`).join("");
    parts.push(`xref\n0 ${offsets.length + 1}\n0000000000 65535 f \n${entries}trailer\n<< /Size ${offsets.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`);
    const data = new DataTransfer();
    data.items.add(new File(parts, "large-manual.pdf", { type: "application/pdf" }));
    document.getElementById("dropzone").dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
  });
  await page.waitForFunction(() => [...document.querySelectorAll("#documents tbody tr")].some((r) => r.textContent.includes("large-manual") && r.querySelector(".badge.indexed")));
  summary.direct_upload = true;

  // Pasted text with a title.
  await page.click(".add-more summary");
  await page.fill("#text-title", "Pasted note");
  await page.fill("#text-content", "A pasted note about lifetimes and borrowing.");
  await page.click("#ingest-text button");
  await page.waitForFunction(() => [...document.querySelectorAll("#documents tbody tr")].some((r) => r.textContent.includes("Pasted note")));
  summary.added_by_drop_and_paste = true;
  await shot(page, "dropped-and-pasted");

  // An API error reaches the user in words: a private address is refused.
  await page.fill("#url", "http://127.0.0.1:9/secret");
  await page.click("#ingest-url button");
  const toast = await page.waitForSelector(".toast.error");
  summary.error_toast = await toast.textContent();
  await shot(page, "error");

  // Delete with confirmation: Cancel keeps it, Delete removes it.
  const rows = await page.locator("#documents tbody tr").count();
  await page.click("#documents tbody tr:first-child button.delete");
  await page.waitForSelector("#confirm:not([hidden])");
  await shot(page, "confirm-delete");
  await page.click("#confirm-cancel");
  check((await page.locator("#documents tbody tr").count()) === rows, "Cancel keeps the document");
  await page.click("#documents tbody tr:first-child button.delete");
  await page.click("#confirm-ok");
  await page.waitForFunction((n) => document.querySelectorAll("#documents tbody tr").length === n - 1, rows);
  summary.documents_after_delete = rows - 1;
  await shot(page, "deleted");

  // Phone width: nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.click("#tab-chat");
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `page is ${overflow}px wider than a phone`);
  await shot(page, "phone-chat");
  await page.click("#tab-documents");
  const docOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(docOverflow <= 0, `documents view is ${docOverflow}px wider than a phone`);
  await shot(page, "phone-documents");
  await context.close();
} catch (e) {
  failed = e;
}
await browser.close();
summary.ok = failed === null;
if (failed) summary.failure = String(failed.stack || failed);
console.log(JSON.stringify(summary));
process.exit(failed ? 1 : 0);
