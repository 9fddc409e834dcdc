// The dashboard end to end, in Debian's Chromium driven by playwright-core
// (no browser is ever downloaded). A server must be running: its
// logins.json (written by `payoff demo`, which `node demo.mjs start` runs)
// is PAYOFF_LOGINS, default artifacts/browser/demo/logins.json.
//
// Without /usr/bin/chromium (or PAYOFF_CHROMIUM) the tests are skipped with
// a message, unless PAYOFF_BROWSER_TESTS=required, when that is a failure.
// Screenshots of every page go to PAYOFF_ARTIFACTS (default
// artifacts/browser/screenshots, git-ignored).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "..", "..");
const chromiumPath = process.env.PAYOFF_CHROMIUM || "/usr/bin/chromium";
const required = process.env.PAYOFF_BROWSER_TESTS === "required";
const loginsFile = process.env.PAYOFF_LOGINS || path.join(repo, "artifacts", "browser", "demo", "logins.json");
const shots = process.env.PAYOFF_ARTIFACTS || path.join(repo, "artifacts", "browser", "screenshots");

const haveChromium = fs.existsSync(chromiumPath);
const skip = haveChromium
  ? false
  : `no Chromium at ${chromiumPath}: install it with \`apt-get install -y chromium\` (set PAYOFF_BROWSER_TESTS=required to make this a failure)`;
if (!haveChromium && required) {
  test("Chromium is installed (PAYOFF_BROWSER_TESTS=required)", () => {
    assert.fail(`PAYOFF_BROWSER_TESTS=required but there is no Chromium at ${chromiumPath}`);
  });
}
if (skip && !required) console.log(`# browser tests skipped: ${skip}`);
const run = !skip;

let browser;
let logins;
const shared = {};

before(async () => {
  if (!run) return;
  assert.ok(fs.existsSync(loginsFile), `no ${loginsFile}: start a server first (node tests/browser/demo.mjs start), or set PAYOFF_LOGINS`);
  logins = JSON.parse(fs.readFileSync(loginsFile, "utf8"));
  fs.mkdirSync(shots, { recursive: true });
  const { chromium } = await import("playwright-core");
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  if (browser) await browser.close();
});

const ui = (page) => `${logins.url}/ui/customers/${logins.customer}/${page}`;

async function api(role, route) {
  const response = await fetch(logins.url + route, { headers: { authorization: `Bearer ${logins.keys[role]}` } });
  const text = await response.text();
  assert.equal(response.status, 200, `${route}: ${text}`);
  return JSON.parse(text);
}

/** A fresh browser context logged in as `role` through the login form. */
async function login(role) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${logins.url}/ui/login`);
  await page.fill("#key", logins.keys[role]);
  await Promise.all([page.waitForURL((u) => !u.pathname.startsWith("/ui/login")), page.click("form.login button")]);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "payoff_session");
  assert.ok(session, "a session cookie is set");
  assert.equal(session.httpOnly, true, "the session cookie is httpOnly");
  assert.equal(session.sameSite, "Strict", "the session cookie is SameSite=Strict");
  return page;
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

/** "1,234.50 USD" → "1234.50". */
const amount = (text) => text.replace(/[^0-9.\-]/g, "");

async function open(page, url, status = 200) {
  const response = await page.goto(url);
  assert.equal(response.status(), status, `${url} answers ${status}`);
  return response;
}

test("a customer viewer sees the same statement total as the API, verified", { skip }, async () => {
  const page = await login("customer_viewer");
  const { statements } = await api("customer_viewer", `/v1/customers/${logins.customer}/statements`);
  const listed = statements.find((s) => s.period === logins.period);
  assert.ok(listed, `the API lists a statement for ${logins.period}`);
  const signed = await api("customer_viewer", `/v1/statements/${listed.id}`);

  await open(page, ui(`overview?period=${logins.period}`));
  assert.equal(amount(await page.textContent("#billed-total")), signed.total);
  assert.ok(await page.locator("figure.chart svg").count() >= 2, "the overview draws its charts");
  await shot(page, "overview");

  await open(page, ui("statements"));
  await shot(page, "statements");
  await Promise.all([page.waitForURL(/\/statements\/st\./), page.click(`#statements a[href$="${listed.id}"]`)]);
  assert.equal(amount(await page.textContent("#statement-total")), signed.total);
  await page.waitForFunction(() => !document.querySelector("#verified").textContent.includes("Checking"), null, { timeout: 60_000 });
  assert.equal((await page.textContent("#verified")).trim(), "\u2714 Verified");
  await shot(page, "statement");

  // The downloads are the API's bytes.
  const downloaded = await page.evaluate(async (href) => (await fetch(href)).text(), ui(`statements/${listed.id}/download/statement.json`));
  assert.equal(JSON.parse(downloaded).total, signed.total);
  await page.context().close();
});

test("a customer viewer cannot open the economics page", { skip }, async () => {
  const page = await login("customer_viewer");
  await open(page, ui("overview"));
  assert.equal(await page.locator('nav.tabs a:has-text("Economics")').count(), 0, "no Economics tab for a viewer");
  await open(page, ui("economics"), 403);
  assert.match(await page.textContent("h1"), /403/);
  await shot(page, "economics-refused-for-viewer");
  // Nor another customer's pages: they do not exist for this key.
  await open(page, `${logins.url}/ui/customers/globex/overview`, 404);
  await page.context().close();

  const operator = await login("operator");
  await open(operator, ui("economics"));
  assert.ok(await operator.locator("#margins").count(), "an operator sees margins per customer");
  await shot(operator, "economics");
  await operator.context().close();
});

test("a customer admin raises a dispute and sees it listed", { skip }, async () => {
  const page = await login("customer_admin");
  // An outcome billed on the closed statement (its dispute window is open),
  // else one still to be billed.
  for (const filter of [`state=billed&period=${logins.period}`, "state=billable", "state=pending"]) {
    await open(page, ui(`outcomes?${filter}`));
    if ((await page.locator("#outcomes tbody a").count()) > 0) break;
  }
  await shot(page, "outcomes");
  const first = page.locator("#outcomes tbody a").first();
  shared.outcome = (await first.textContent()).trim();
  await Promise.all([page.waitForURL(/\/outcomes\/out\./), first.click()]);
  assert.match(await page.textContent("#outcome-state"), /billed|billable|pending/);
  await page.fill('#dispute textarea[name="reason"]', "The customer says this ticket was solved by our own staff.");
  await shot(page, "outcome");
  await Promise.all([page.waitForURL(/\/disputes\?done=raised/), page.click('#dispute button[type="submit"]')]);
  const row = page.locator("#disputes tr", { hasText: shared.outcome });
  assert.equal(await row.count(), 1, "the dispute is listed");
  assert.match(await row.textContent(), /disputed/);
  await shot(page, "disputes");
  await page.context().close();
});

test("an operator accepts the dispute and the outcome's state changes", { skip }, async () => {
  assert.ok(shared.outcome, "the previous test raised a dispute");
  const page = await login("operator");
  await open(page, ui("disputes"));
  const row = page.locator("#disputes tr", { hasText: shared.outcome });
  await Promise.all([page.waitForURL(/done=accept/), row.locator('button:has-text("Accept")').click()]);
  await open(page, ui(`outcomes/${shared.outcome}`));
  const state = (await page.textContent("#outcome-state")).trim();
  assert.notEqual(state, "disputed");
  assert.notEqual(state, "billable");
  const fromApi = await api("operator", `/v1/outcomes/${shared.outcome}`);
  assert.equal(state, fromApi.state, "the page and the API agree");
  await shot(page, "outcome-after-acceptance");
  await page.context().close();
});

test("an approver approves a queued reply and the audit log shows it", { skip }, async () => {
  const page = await login("customer_admin");
  await open(page, ui("approvals"));
  const card = page.locator("section.approval").first();
  assert.ok(await card.count(), "a reply waits for approval");
  const id = await card.getAttribute("id");
  assert.ok(await card.locator(".draft").count(), "the draft is shown");
  await shot(page, "approvals");
  await Promise.all([page.waitForURL(/done=approve/), card.locator('button:has-text("Approve and send")').click()]);
  assert.equal(await page.locator(`section.approval#${id}`).count(), 0, "it left the queue");
  await open(page, ui("audit?action=approve"));
  const row = page.locator("#audit tr", { hasText: `approval/${id}` });
  assert.equal(await row.count(), 1, "the audit log shows the approval");
  assert.match(await row.textContent(), /allow/);
  await shot(page, "audit");
  await page.context().close();
});

test("the knowledge page never shows a restricted article to someone outside its group", { skip }, async () => {
  const { article_title: title, query, member } = logins.restricted;
  const page = await login("customer_viewer");
  await open(page, ui(`knowledge?q=${encodeURIComponent(query)}`));
  const text = await page.textContent("main");
  assert.ok(!text.includes(title), `the viewer does not see "${title}"`);
  const html = await page.content();
  assert.ok(!html.includes(title), "nor anywhere in the page's HTML");
  await shot(page, "knowledge-viewer");
  await page.context().close();
  if (member) {
    const insider = await login(member);
    await open(insider, ui(`knowledge?q=${encodeURIComponent(query)}`));
    assert.ok((await insider.textContent("main")).includes(title), `a member of the group sees "${title}"`);
    await shot(insider, "knowledge-member");
    await insider.context().close();
  }
});

test("every page opens for an operator, and logging out ends the session", { skip }, async () => {
  const page = await login("operator");
  await open(page, `${logins.url}/ui/customers`);
  await shot(page, "customers");
  for (const name of ["overview", "outcomes", "statements", "disputes", "approvals", "agents", "knowledge", "audit", "contract", "economics"]) {
    await open(page, ui(name));
    assert.equal(await page.locator("section.error").count(), 0, `${name} renders without an error`);
    await shot(page, `operator-${name}`);
  }
  await Promise.all([page.waitForURL(/\/ui\/login/), page.click("form.logout button")]);
  await shot(page, "login");
  const response = await page.goto(ui("overview"));
  assert.ok(response.url().includes("/ui/login"), "after logout a page sends back to the login");
  await page.context().close();
});
