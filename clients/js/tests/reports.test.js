// The attendance report screen (`/reports`) in a real headless Chromium
// against a real hub with a 2 s idle timeout, a tenant in
// America/Sao_Paulo and people who went online and offline through real
// SDK tabs before the screen is opened: what an administrator, a team
// supervisor and a standard user see, the CSV they download, and the
// Portuguese screen of a pt-BR browser.
//
// With PRESENCE_SCREENSHOTS=<dir> it also saves reports.png there: the
// page showing a made-up three-day report of two teams (a real one would
// need days of real presence), served in place of the hub's answer.

import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { after, before, test } from "node:test";

import { chromium } from "playwright-core";

import { PresenceClient } from "../presence.js";
import { Hub, WebSocket, mint, until } from "./hub.js";

const IDLE_MS = 2000;
const TZ = "America/Sao_Paulo";
const T = "acme";
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const SHOTS = process.env.PRESENCE_SCREENSHOTS && resolve(process.env.PRESENCE_SCREENSHOTS);
const UI_WAIT = 5000;
const EVERYONE = ["ana", "bruno", "carla", "fabio", "hugo", "otto", "vera"];
const SALES = ["bruno", "hugo", "vera"];

let hub, browser;
const tabs = [];

/** A tab of `user` opened by a program, with one interaction: online. */
async function online(user) {
  const c = new PresenceClient({ url: hub.wsUrl, WebSocket, token: async () => mint(T, user) });
  tabs.push(c);
  c.start();
  await until(() => c.state === "open", UI_WAIT, `${user} connected`);
  c.interacted();
  await until(async () => (await hub.status(T, user)) === "online", UI_WAIT, `${user} online`);
  return c;
}

const offline = (user, ms = UI_WAIT) =>
  until(async () => (await hub.status(T, user)) === "offline", ms, `${user} offline`);

before(async () => {
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  hub = await Hub.start({ idleTimeoutMs: IDLE_MS, activityIntervalMs: 300 });
  await hub.seed(T, [["ana", "admin"], ["bruno"], ["carla"], ["fabio"], ["hugo"], ["otto"], ["vera"]]);
  await hub.admin("PUT", `/v1/tenants/${T}`, { user_limit: 100, time_zone: TZ });
  for (const [id, name, crm, members] of [
    ["sales", "Sales", true, [["bruno", "supervisor"], ["hugo", "member"], ["vera", "member"]]],
    ["finance", "Finance", false, [["carla", "supervisor"], ["fabio", "member"], ["otto", "member"]]],
  ]) {
    await hub.admin("PUT", `/v1/tenants/${T}/teams/${id}`, { name, crm, active: true });
    for (const [uid, as] of members) await hub.admin("PUT", `/v1/tenants/${T}/teams/${id}/members/${uid}`, { as });
  }
  // hugo: two periods, the first ended by a logout, the second by the idle
  // timeout; fabio: one, logged out; vera: online until the end.
  const [hugo, fabio] = await Promise.all([online("hugo"), online("fabio")]);
  hugo.logout();
  fabio.logout();
  await Promise.all([offline("hugo"), offline("fabio")]);
  await online("hugo");
  await offline("hugo", IDLE_MS + UI_WAIT);
  const vera = await online("vera");
  vera.busy = setInterval(() => vera.interacted(), 300);

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  });
});

after(async () => {
  for (const c of tabs) {
    clearInterval(c.busy);
    c.close();
  }
  await browser?.close();
  await hub?.stop();
});

/** The report as the API answers it to `user` (what the screen must show). */
async function report(user, query = "") {
  return hub.admin("GET", `/v1/tenants/${T}/reports/attendance?format=json&intervals=true${query}`, undefined, mint(T, user));
}

/** `user`'s /reports in a fresh browser of `locale`, once the report is shown (or refused). */
async function openReports(user, locale = "en-US", state = "ready", query = "") {
  const ctx = await browser.newContext({ locale, viewport: { width: 1280, height: 860 }, acceptDownloads: true });
  const page = await ctx.newPage();
  await page.goto(`${hub.base}/reports${query}#token=${mint(T, user)}`);
  await page.waitForSelector(`body[data-report="${state}"]`, { timeout: UI_WAIT });
  return page;
}

const rowsOf = (page) => page.$$eval("#report tbody[data-user]", (bs) => bs.map((b) => b.dataset.user));
const text = (page, sel) => page.textContent(sel).then((s) => s.trim());
const clock = new Intl.DateTimeFormat("en", { timeZone: TZ, hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });

test("an administrator sees every attendant, a bar per day with the online periods in the tenant's zone, and totals", async () => {
  const api = await report("ana");
  const page = await openReports("ana");
  const today = api.to;
  // The hub's default range (today in São Paulo) is put in the inputs.
  assert.equal(await page.inputValue("#from"), api.from);
  assert.equal(await page.inputValue("#to"), today);
  assert.match(await text(page, "#zone"), /America\/Sao_Paulo/);
  assert.deepEqual(await rowsOf(page), EVERYONE);
  assert.deepEqual(api.users.map((u) => u.id), EVERYONE, "the screen lists what the API answers");

  // hugo: two green pieces on today's bar, each with its times in São Paulo.
  const hugo = `#report tbody[data-user="hugo"]`;
  const day = `${hugo} tr[data-date="${today}"]`;
  const titles = await page.$$eval(`${day} .period`, (ps) => ps.map((p) => p.title));
  const pieces = api.users.find((u) => u.id === "hugo").days.find((d) => d.date === today).intervals;
  assert.equal(pieces.length, 2);
  assert.deepEqual(titles, pieces.map(([a, b]) => `${clock.format(a)} – ${clock.format(b)}`));
  assert.equal(await text(page, `${day} td[data-col="periods"]`), "2");
  assert.match(await text(page, `${day} td[data-col="online"]`), /^\d+ s$/);
  assert.match(await text(page, `${day} td[data-col="gap"]`), /^\d+ s$/);
  assert.equal(await text(page, `${hugo} tr.user td[data-col="periods"]`), "2");
  // Left to right in time, with a visible gap between them.
  const boxes = await page.$$eval(`${day} .period`, (ps) => ps.map((p) => p.getBoundingClientRect()).map((r) => [r.left, r.right]));
  assert.ok(boxes[0][0] <= boxes[1][0], JSON.stringify(boxes));

  // vera is still online: her piece is open and her day has no end yet.
  const vera = `#report tbody[data-user="vera"] tr[data-date="${today}"]`;
  assert.equal(await page.locator(`${vera} .period.open`).count(), 1);
  assert.equal(await text(page, `${vera} td[data-col="last"]`), "still online");
  assert.match(await page.getAttribute(`${vera} .period.open`, "title"), / – now$/);
  // otto never came: an empty bar.
  assert.equal(await page.locator(`#report tbody[data-user="otto"] tr[data-date="${today}"] .period`).count(), 0);
  assert.equal(await text(page, `#report tbody[data-user="otto"] tr.user td[data-col="periods"]`), "0");

  // Team totals as the hub adds them up.
  for (const tm of api.teams) {
    assert.equal(await text(page, `#teams tr[data-team="${tm.id}"] td[data-col="periods"]`), String(tm.periods), tm.id);
    assert.equal(await text(page, `#teams tr[data-team="${tm.id}"] td[data-col="members"]`), String(tm.members), tm.id);
  }
  assert.ok(api.teams.find((tm) => tm.id === "sales").periods >= 3, "hugo's two and vera's one");

  // The team picker lists the report's teams and narrows the report.
  const options = await page.$$eval("#team option", (os) => os.map((o) => o.value));
  assert.deepEqual(options, ["", "finance", "sales"]);
  await page.selectOption("#team", "sales");
  await page.waitForFunction(() => !document.querySelector('#report tbody[data-user="otto"]'), null, { timeout: UI_WAIT });
  await page.waitForSelector('body[data-report="ready"]', { timeout: UI_WAIT });
  const sales = (await report("ana", "&team=sales")).users.map((u) => u.id);
  assert.deepEqual(await rowsOf(page), sales);
  assert.ok(sales.includes("hugo") && sales.includes("vera") && sales.every((u) => SALES.includes(u)), sales.join());
  assert.match(page.url(), /[?&]team=sales/);
  await page.context().close();
});

test("the CSV download is the hub's file: UTF-8 BOM, `;`-separated, named after the range", async () => {
  const page = await openReports("ana");
  const today = await page.inputValue("#to");
  const [download] = await Promise.all([page.waitForEvent("download", { timeout: UI_WAIT }), page.click("#csv")]);
  assert.equal(download.suggestedFilename(), `attendance-${today}-${today}.csv`);
  const bytes = readFileSync(await download.path());
  assert.deepEqual([...bytes.subarray(0, 3)], [0xef, 0xbb, 0xbf], "starts with the BOM");
  const lines = bytes.subarray(3).toString("utf8").split(/\r?\n/);
  assert.equal(lines[0], "user;name;date;time_online;first_online;last_offline;periods;longest_gap");
  const hugo = lines.find((l) => l.startsWith(`hugo;`) && l.includes(`;${today};`));
  assert.ok(hugo, lines.join("\n"));
  assert.equal(hugo.split(";")[6], "2", hugo);
  assert.ok(lines.some((l) => l.startsWith("team:sales;")), "a team total row");
  await page.context().close();
});

test("a range the hub refuses shows its reason, and picking today again shows the report", async () => {
  const page = await openReports("ana");
  await page.fill("#from", "2000-01-01");
  await page.waitForSelector('body[data-report="bad_request"]', { timeout: UI_WAIT });
  assert.match(await text(page, "#report-notice"), /^Check the dates: .+/);
  assert.equal(await page.isVisible("#report"), false);
  await page.click('#quick button[data-range="today"]');
  await page.waitForSelector('body[data-report="ready"]', { timeout: UI_WAIT });
  assert.deepEqual(await rowsOf(page), EVERYONE);
  await page.context().close();
});

test("a supervisor sees only the members of their team", async () => {
  const api = await report("bruno");
  const page = await openReports("bruno");
  const rows = await rowsOf(page);
  assert.deepEqual(rows, api.users.map((u) => u.id));
  assert.ok(rows.includes("hugo") && rows.includes("vera"), rows.join());
  for (const u of rows) assert.ok(SALES.includes(u), `bruno sees ${u}, who is not in Sales`);
  assert.deepEqual(await page.$$eval("#team option", (os) => os.map((o) => o.value)), ["", "sales"]);
  assert.deepEqual(await page.$$eval("#teams tr[data-team]", (rs) => rs.map((r) => r.dataset.team)), ["sales"]);
  assert.equal(await page.locator('#report tbody[data-user="hugo"] .period').count(), 2);
  await page.context().close();
});

test("a standard user who supervises nobody is told the report is not for them (in Portuguese for a pt-BR browser)", async () => {
  const page = await openReports("otto", "pt-BR", "forbidden");
  assert.equal(await text(page, "h1"), "Relatório de presença");
  assert.match(await text(page, "#report-notice"), /administradores e supervisores de equipe/);
  assert.equal(await page.locator("tbody[data-user]").count(), 0);
  assert.equal(await page.isDisabled("#csv"), true);
  await page.context().close();
});

test("a pt-BR browser gets the report in Portuguese", async () => {
  const page = await openReports("ana", "pt-BR");
  assert.equal(await text(page, "h1"), "Relatório de presença");
  assert.equal(await text(page, '#report th:nth-child(3)'), "Tempo online");
  assert.equal(await text(page, '#csv'), "Baixar CSV");
  const today = await page.inputValue("#to");
  assert.equal(await text(page, `#report tbody[data-user="vera"] tr[data-date="${today}"] td[data-col="last"]`), "ainda online");
  assert.match(await text(page, "#zone"), /Horários em America\/Sao_Paulo/);
  await page.context().close();
});

test("a range shows a bar per day for each attendant, a day off empty, each piece where its local times put it", async () => {
  // A made-up report (a real one would need days of real presence) served
  // in place of the hub's answer; the page is the real one.
  const made = madeUpReport();
  const ctx = await browser.newContext({ locale: "en-US", viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  await page.route(/\/reports\/attendance\?/, (route) => route.fulfill({ json: made }));
  await page.goto(`${hub.base}/reports?from=2026-11-16&to=2026-11-18#token=${mint(T, "ana")}`);
  await page.waitForSelector('body[data-report="ready"]', { timeout: UI_WAIT });
  await page.waitForSelector('#conn[data-state="open"]', { timeout: UI_WAIT });
  const dates = ["2026-11-16", "2026-11-17", "2026-11-18"];
  for (const u of made.users) {
    assert.deepEqual(await page.$$eval(`tbody[data-user="${u.id}"] tr.day`, (rs) => rs.map((r) => r.dataset.date)), dates, u.id);
  }
  const off = 'tbody[data-user="vera"] tr[data-date="2026-11-17"]';
  assert.equal(await page.getAttribute(off, "class"), "day absent");
  assert.equal(await page.locator(`${off} .period`).count(), 0);
  assert.match(await text(page, 'tbody[data-user="vera"] tr.user'), /present 2 of 3 day\(s\)/);
  // São Paulo's midnight is 03:00 UTC: a piece is placed by its local time.
  const [a, b] = made.users[0].days[0].intervals[0];
  const midnight = Date.parse("2026-11-16T00:00:00-03:00");
  const style = await page.getAttribute('tbody[data-user="bruno"] tr[data-date="2026-11-16"] .period', "style");
  const [left, width] = [/left: ([\d.]+)%/, /width: ([\d.]+)%/].map((re) => Number(re.exec(style)?.[1]));
  assert.ok(Math.abs(left - ((a - midnight) / 864e5) * 100) < 0.01, style);
  assert.ok(Math.abs(width - ((b - a) / 864e5) * 100) < 0.01, style);
  if (SHOTS) {
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: join(SHOTS, "reports.png"), fullPage: true });
  }
  await ctx.close();
});

/**
 * A report in the API's shape for 16–18 Nov 2026 in São Paulo (UTC−3, no
 * DST): six attendants of two teams with working days of two to four
 * periods, two of them still online on the last day at 15:40.
 */
function madeUpReport() {
  let seed = 12;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const at = (date, h, m) => Date.parse(`${date}T00:00:00-03:00`) + (h * 60 + m) * 60000;
  const now = at("2026-11-18", 15, 40);
  const people = [
    ["bruno", "Bruno Lima", "sales"],
    ["diego", "Diego Alves", "support"],
    ["elisa", "Elisa Rocha", "sales"],
    ["gabi", "Gabriela Reis", "support"],
    ["hugo", "Hugo Melo", "sales"],
    ["vera", "Vera Campos", "sales"],
  ];
  const dates = ["2026-11-16", "2026-11-17", "2026-11-18"];
  const users = people.map(([id, name, team], n) => {
    const days = [];
    for (const date of dates) {
      if (id === "vera" && date === "2026-11-17") continue; // a day off
      const last = date === dates[2];
      const open = last && n % 3 === 1;
      const start = at(date, 7 + Math.floor(rand() * 2), Math.floor(rand() * 50));
      const lunch = at(date, 12, Math.floor(rand() * 40));
      const back = lunch + (45 + Math.floor(rand() * 30)) * 60000;
      const end = last && !open ? at(date, 14, 30 + Math.floor(rand() * 60)) : at(date, 17, Math.floor(rand() * 55));
      let clipped = [[start, lunch], [back, end]];
      if (rand() < 0.6) {
        const gap = at(date, 9 + Math.floor(rand() * 2), Math.floor(rand() * 50));
        clipped.splice(0, 1, [start, gap], [gap + (8 + Math.floor(rand() * 20)) * 60000, lunch]);
      }
      // Still online at `now`: the open piece ends at now, as the API's does.
      if (open) clipped = clipped.filter(([a]) => a < now).map(([a, b]) => [a, Math.min(b, now)]);
      const gaps = clipped.slice(1).map(([a], i) => a - clipped[i][1]);
      days.push({
        date,
        online_ms: clipped.reduce((s, [a, b]) => s + b - a, 0),
        first_online: clipped[0][0],
        last_offline: open ? null : clipped.at(-1)[1],
        periods: clipped.length,
        longest_gap_ms: Math.max(0, ...gaps),
        intervals: clipped,
      });
    }
    const total = {
      online_ms: days.reduce((s, d) => s + d.online_ms, 0),
      days_present: days.length,
      periods: days.reduce((s, d) => s + d.periods, 0),
      longest_gap_ms: Math.max(0, ...days.map((d) => d.longest_gap_ms)),
    };
    return { id, name, teams: [team], days, total };
  });
  const teams = [["sales", "Sales"], ["support", "Support"]].map(([id, name]) => {
    const members = users.filter((u) => u.teams.includes(id));
    return {
      id,
      name,
      members: members.length,
      online_ms: members.reduce((s, u) => s + u.total.online_ms, 0),
      periods: members.reduce((s, u) => s + u.total.periods, 0),
    };
  });
  return { time_zone: TZ, from: dates[0], to: dates[2], generated_at: now, users, teams };
}
