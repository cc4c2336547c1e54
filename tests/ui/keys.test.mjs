// The web UI against a server that needs API keys: the page asks for a
// key when the server answers 401, asks again when a key is refused,
// keeps the key in sessionStorage only, shows the tenant and role, and
// hides what the role may not do. Started by crates/rag-agent/tests/e2e/ui.rs.
//
//   UI_BASE_URL=http://127.0.0.1:PORT UI_READER_KEY=rag_… UI_WRITER_KEY=rag_… \
//   UI_SCREENSHOTS=target/ui-screenshots/keys node tests/ui/keys.test.mjs
import { check, launch, screenshots } from "./browser.mjs";

const base = process.env.UI_BASE_URL.replace(/\/$/, "");
const shots = process.env.UI_SCREENSHOTS;
const readerKey = process.env.UI_READER_KEY;
const writerKey = process.env.UI_WRITER_KEY;

const summary = { steps: [], console_errors: [], urls: [] };
const shot = screenshots(shots, summary);
const browser = await launch();

let failed = null;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) summary.console_errors.push(m.text());
  });
  page.on("pageerror", (e) => summary.console_errors.push(String(e)));
  page.on("request", (r) => summary.urls.push(r.url()));
  page.setDefaultTimeout(60_000);

  // No key yet: the server's 401 opens the prompt.
  await page.goto(`${base}/`);
  await page.waitForSelector("#key-dialog:not([hidden])");
  await shot(page, "asks-for-key");

  // A refused key asks again, saying so.
  await page.fill("#api-key", "rag_0000000000000000_nope");
  await page.click("#key-form button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#key-reason").textContent.includes("refused"));
  summary.refused_reason = await page.textContent("#key-reason");
  await shot(page, "key-refused");

  // A reader: its tenant and role are shown; uploads, ingestion and
  // delete are not offered.
  await page.fill("#api-key", readerKey);
  await page.click("#key-form button[type=submit]");
  await page.waitForSelector("#who:not([hidden])");
  summary.reader_who = (await page.textContent("#who")).trim();
  await page.click("#tab-documents");
  await page.waitForSelector("#documents tbody tr");
  check(await page.locator("#dropzone").isHidden(), "a reader sees no upload area");
  check(await page.locator("details.add-more").isHidden(), "a reader sees no ingest forms");
  check((await page.locator("#documents tbody button.delete").count()) === 0, "a reader sees no delete buttons");
  summary.reader_rows = await page.locator("#documents tbody tr").count();
  await shot(page, "reader");

  // The key is in this tab's sessionStorage, nowhere else.
  const stored = await page.evaluate(() => ({
    session: sessionStorage.getItem("rag-agent.api-key"),
    local: JSON.stringify(localStorage),
    url: location.href,
  }));
  check(stored.session === readerKey, "the key is kept in sessionStorage");
  check(!stored.local.includes(readerKey), "the key is not in localStorage");
  check(!stored.url.includes(readerKey), "the key is not in the URL");
  check(!summary.urls.some((u) => u.includes(readerKey) || u.includes("rag_0000")), "no request URL carries a key");

  // Forgetting the key asks again; a writer may upload and delete.
  await page.click("#sign-out");
  await page.waitForSelector("#key-dialog:not([hidden])");
  await page.fill("#api-key", writerKey);
  await page.click("#key-form button[type=submit]");
  await page.waitForSelector("#who:not([hidden])");
  summary.writer_who = (await page.textContent("#who")).trim();
  await page.click("#tab-documents");
  await page.waitForSelector("#documents tbody button.delete");
  check(await page.locator("#dropzone").isVisible(), "a writer sees the upload area");
  await shot(page, "writer");
  await context.close();
} catch (e) {
  failed = e;
}
await browser.close();
summary.ok = failed === null;
if (failed) summary.failure = String(failed.stack || failed);
console.log(JSON.stringify(summary));
process.exit(failed ? 1 : 0);
