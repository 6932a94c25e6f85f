// Captures docs/dashboard.png from a running demo:
//   cargo run --release -- demo &   (then send some traffic)
//   node tests/ui/screenshot.mjs http://127.0.0.1:8080 sk-demo-admin docs/dashboard.png
import { chromium } from "playwright-core";

const [url, key, out] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1440, height: 1180 } });
await page.goto(`${url}/ui`);
await page.fill("#admin-key", key);
await page.click("#login-form button");
await page.waitForSelector("#usage-table tbody tr");
await page.waitForTimeout(2500);
await page.screenshot({ path: out, fullPage: false });
await browser.close();
