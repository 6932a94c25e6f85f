// Drives the dashboard in headless Chromium. Run by tests/dashboard.rs, which
// starts the router and its mock upstream and restarts the router between
// phases. Exits non-zero with a message on the first failed expectation.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const { ROUTER_URL, ADMIN_KEY, CLIENT_KEY, PHASE, ARTIFACTS } = process.env;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
mkdirSync(ARTIFACTS, { recursive: true });

function expect(cond, message) {
  if (!cond) throw new Error("expectation failed: " + message);
}

async function until(what, fn, timeout = 10000) {
  const start = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - start > timeout) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function chat(n) {
  for (let i = 0; i < n; i++) {
    const r = await fetch(`${ROUTER_URL}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${CLIENT_KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "g", messages: [{ role: "user", content: "hi" }] }),
    });
    expect(r.status === 200, `chat status ${r.status}`);
  }
}

async function usage() {
  const r = await fetch(`${ROUTER_URL}/admin/usage`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  return (await r.json()).usage;
}

const row = (rows, key, model) => rows.find((r) => r.key === key && r.model === model) || { requests: 0, tokens: 0 };

async function cellTokens(page, key, model) {
  const text = await page.textContent(`#usage-table tr[data-key="${key}"][data-model="${model}"] td[data-field=tokens]`);
  return Number(text.replace(/,/g, ""));
}

async function login(page) {
  await page.goto(`${ROUTER_URL}/ui`);
  await page.waitForSelector("#login-form", { state: "visible" });
  await page.fill("#admin-key", "definitely-wrong");
  await page.click("#login-form button");
  await until("the wrong-key message", async () => (await page.textContent("#login-error")).includes("Wrong"));
  await page.fill("#admin-key", CLIENT_KEY);
  await page.click("#login-form button");
  await until("the client-key message", async () => (await page.textContent("#login-error")).includes("client key"));
  await page.fill("#admin-key", ADMIN_KEY);
  await page.click("#login-form button");
  await page.waitForSelector("#usage-table tbody tr", { state: "visible" });
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
  const page = await context.newPage();
  const cookies = async () => (await context.cookies()).find((c) => c.name === "llmr_session");

  if (PHASE === "first") {
    await login(page);
    const cookie = await cookies();
    expect(cookie && cookie.httpOnly && cookie.sameSite === "Strict", "session cookie is HttpOnly and SameSite=Strict");

    // Live usage: requests sent now show up without reloading the page.
    await chat(4);
    await until("live usage in the table", async () => (await cellTokens(page, "p#0", "a")) > 0 && (await cellTokens(page, "p#1", "a")) > 0);
    await page.screenshot({ path: `${ARTIFACTS}/dashboard.png`, fullPage: true });

    // Change a weight: model b to weight 0 ("always use"); routing follows.
    await page.fill('input[data-weight="g|p|b"]', "0");
    await page.click('button[data-save-weight="g|p|b"]');
    await until("the saved weight", async () => (await usage()).length > 0 && (await page.inputValue('input[data-weight="g|p|b"]')) === "0");
    const before = await usage();
    await chat(4);
    const after = await usage();
    const bDelta = ["p#0", "p#1"].reduce((s, k) => s + row(after, k, "b").requests - row(before, k, "b").requests, 0);
    const aDelta = ["p#0", "p#1"].reduce((s, k) => s + row(after, k, "a").requests - row(before, k, "a").requests, 0);
    expect(bDelta === 4 && aDelta === 0, `weight 0 took all traffic (b +${bDelta}, a +${aDelta})`);

    // Disable key p#1: it receives no traffic.
    await page.uncheck('input[data-key-toggle="p#1"]');
    await until("the key shown disabled", async () => (await page.getAttribute('tr[data-provider-key="p#1"]', "class")) === "disabled");
    const beforeDisable = await usage();
    await chat(6);
    const afterDisable = await usage();
    const p1 = ["a", "b"].reduce((s, m) => s + row(afterDisable, "p#1", m).requests - row(beforeDisable, "p#1", m).requests, 0);
    expect(p1 === 0, `disabled key got ${p1} requests`);

    // Edits without the CSRF token are refused, even with the session cookie.
    const forged = await page.evaluate(async () => (await fetch("/ui/api/edit", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ op: "reset_usage" }) })).status);
    expect(forged === 403, `edit without CSRF token got ${forged}`);

    // A phone-sized screen: no horizontal page overflow.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(300);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow <= 1, `page overflows a phone screen by ${overflow}px`);
    await page.screenshot({ path: `${ARTIFACTS}/dashboard-phone.png`, fullPage: false });
  } else if (PHASE === "after-restart") {
    await login(page);
    await until("the weight edit after restart", async () => (await page.inputValue('input[data-weight="g|p|b"]')) === "0");
    expect(!(await page.isChecked('input[data-key-toggle="p#1"]')), "key p#1 is still disabled after restart");
    await page.screenshot({ path: `${ARTIFACTS}/dashboard-after-restart.png`, fullPage: true });
  } else {
    throw new Error("unknown PHASE " + PHASE);
  }
  console.log(`phase ${PHASE}: ok`);
} finally {
  await browser.close();
}
