// What the browser scripts share: Chromium started quietly, numbered
// screenshots recorded in the summary, and checks that fail the script.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

export function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

// Screenshots go to `dir` as 01-name.png, 02-name.png, ...; each step's
// name is pushed to `summary.steps`.
export function screenshots(dir, summary) {
  mkdirSync(dir, { recursive: true });
  let step = 0;
  return async (page, name) => {
    step += 1;
    const file = join(dir, `${String(step).padStart(2, "0")}-${name}.png`);
    await page.screenshot({ path: file, fullPage: false });
    summary.steps.push(name);
  };
}

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    headless: true,
    // The machine has no route to Google: without these Chromium tries to
    // phone home at start and logs refused connections.
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
}
