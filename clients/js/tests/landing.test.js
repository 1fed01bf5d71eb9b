// `GET /` in a real headless Chromium against real hubs: in --dev the
// landing page's links (followed as a person clicks them) open working
// screens, its curl line works and it links the SDK; without --dev the
// status page shows the node and holds no secret.
//
// With PRESENCE_SCREENSHOTS=<dir> it also saves landing.png there.

import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { after, before, test } from "node:test";

import { chromium } from "playwright-core";

import { ADMIN_KEY, Hub, SECRET, until } from "./hub.js";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const SHOTS = process.env.PRESENCE_SCREENSHOTS && resolve(process.env.PRESENCE_SCREENSHOTS);
const UI_WAIT = 5000;

let browser;
const hubs = [];

before(async () => {
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  });
});

after(async () => {
  await browser?.close();
  for (const h of hubs) await h.stop();
});

async function start(o) {
  const hub = await Hub.start(o);
  hubs.push(hub);
  return hub;
}

/** Every link of the page, absolute. */
const linksOf = (page) => page.$$eval("a[href]", (as) => as.map((a) => a.href));

/** Each link answers 200 (the fragment, which holds a token, is not sent). */
async function allAnswer(links) {
  for (const href of links) {
    const r = await fetch(href);
    assert.equal(r.status, 200, `${href} answered ${r.status}`);
  }
}

test("--dev: the landing page's links open every screen, connected, and its curl line works", async () => {
  const hub = await start({ args: ["--dev"] });
  await until(() => hub.stdout.includes("browser SDK:"), 10000, "the --dev banner");
  // The banner names the landing page first.
  const landing = /start here:\s+(http:\/\/\S+)/.exec(hub.stdout)?.[1];
  assert.equal(landing, `${hub.base}/`);

  const ctx = await browser.newContext({ viewport: { width: 900, height: 600 } });
  const page = await ctx.newPage();
  await page.goto(landing);
  assert.equal(await page.getAttribute("body", "data-mode"), "dev");
  assert.equal(await page.getAttribute("#ready", "data-ready"), "true");

  const links = await linksOf(page);
  const paths = new Set(links.map((l) => new URL(l).pathname));
  for (const p of ["/users", "/attendants", "/team", "/reports", "/demo", "/sdk/presence.js", "/metrics", "/v1/openapi.json"]) {
    assert.ok(paths.has(p), `no link to ${p} in ${[...paths]}`);
  }
  await allAnswer(links);

  // The curl line, with the admin key in force, answers with the demo tenant.
  const curl = await page.textContent("#curl");
  const m = /^curl -H 'Authorization: Bearer (\S+)' (http:\/\/\S+)$/.exec(curl.trim());
  assert.ok(m, `not a curl line: ${curl}`);
  assert.equal(m[1], ADMIN_KEY);
  const stats = await (await fetch(m[2], { headers: { authorization: `Bearer ${m[1]}` } })).json();
  assert.ok(stats.active > 0, JSON.stringify(stats));

  if (SHOTS) {
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: join(SHOTS, "landing.png"), fullPage: true });
  }

  // Clicked as a person would: each screen connects with the link's token.
  const follow = async (user, screen) => {
    await page.goto(landing);
    await page.click(`tr[data-user="${user}"] a[data-screen="${screen}"]`);
    return page;
  };
  await follow("ana", "user management");
  await page.waitForSelector('#conn[data-state="open"]', { timeout: UI_WAIT });
  await page.waitForSelector('body[data-roster="ready"]', { timeout: UI_WAIT });
  assert.ok((await page.locator("tr[data-user]").count()) >= 19, "ana sees the demo users");

  await follow("diego", "attendants button");
  await page.waitForSelector('body[data-attendants="ready"]', { timeout: UI_WAIT });
  assert.equal(await page.isVisible("#attendants-btn"), true);

  await follow("fabio", "attendants button");
  await page.waitForSelector('body[data-attendants="forbidden"]', { timeout: UI_WAIT });
  assert.equal(await page.isVisible("#attendants-btn"), false);

  await follow("diego", "team roster");
  await page.waitForSelector('#conn[data-state="open"]', { timeout: UI_WAIT });
  await page.waitForSelector('body[data-roster="ready"]', { timeout: UI_WAIT });

  // The attendance report: ana (administrator) sees every demo user, bruno
  // (Sales supervisor) the members of Sales only.
  await follow("ana", "attendance report");
  await page.waitForSelector('body[data-report="ready"]', { timeout: UI_WAIT });
  assert.ok((await page.locator("#report tbody[data-user]").count()) >= 19, "ana's report lists the demo users");
  await follow("bruno", "attendance report");
  await page.waitForSelector('body[data-report="ready"]', { timeout: UI_WAIT });
  const sales = await page.$$eval("#team option", (os) => os.map((o) => o.value).filter(Boolean));
  assert.deepEqual(sales, ["sales"]);

  await follow("ana", "protocol demo");
  await page.click("#connect");
  await page.waitForFunction(() => document.querySelector("#me").textContent.startsWith("connected as"), null, {
    timeout: UI_WAIT,
  });
  await ctx.close();
});

test("without --dev, / is a status page with no secret on it", async () => {
  const hub = await start({ env: { PRESENCE_NODE_ID: "status-node" } });
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  await page.goto(`${hub.base}/`);
  assert.equal(await page.getAttribute("body", "data-mode"), "status");
  assert.equal(await page.textContent("#node"), "status-node");
  assert.equal(await page.textContent("#mode"), "single node");
  assert.equal(await page.getAttribute("#ready", "data-ready"), "true");
  assert.match(await page.textContent("#version"), /^\d+\.\d+\.\d+/);

  const html = await page.content();
  for (const secret of [ADMIN_KEY, SECRET, "eyJ", "Bearer"]) {
    assert.ok(!html.includes(secret), `the status page shows ${secret}`);
  }

  const links = await linksOf(page);
  const paths = new Set(links.map((l) => new URL(l).pathname));
  for (const p of ["/metrics", "/v1/openapi.json", "/users", "/attendants", "/team", "/reports", "/demo", "/sdk/presence.js"]) {
    assert.ok(paths.has(p), `no link to ${p} in ${[...paths]}`);
  }
  await allAnswer(links);
  // The links lead where they say.
  await page.click('a[href="/metrics"]');
  assert.match(await page.textContent("body"), /presence_open_tabs/);
  await page.goto(`${hub.base}/`);
  await page.click('a[href="/v1/openapi.json"]');
  assert.ok("/" in JSON.parse(await page.textContent("body")).paths, "GET / is documented");
  await ctx.close();
});
