// The SDK against a real hub: what a page using it observes (welcome, tab
// id kept across a reload, activity only while someone interacts, rosters
// kept by snapshots and deltas, reconnection and terminal closes).

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { PresenceClient, jwtClaims } from "../presence.js";
import { Hub, WebSocket, freePort, mint, until } from "./hub.js";

const IDLE_MS = 1500;
const INTERVAL_MS = 300;
let hub;
let tenantSeq = 0;

before(async () => {
  hub = await Hub.start({ idleTimeoutMs: IDLE_MS, activityIntervalMs: INTERVAL_MS });
});
after(() => hub?.stop());

/** A fresh tenant: ann (admin), att (attendant in the CRM team), sam (standard), kim (restricted). */
async function tenant() {
  const tid = `t${++tenantSeq}`;
  await hub.seed(
    tid,
    [["ann", "admin"], ["att"], ["sam"], ["kim", "restricted"]],
    [
      ["crm", true, [["att", "member"], ["kim", "member"]]],
      ["ops", false, [["sam", "supervisor"]]],
    ],
  );
  return tid;
}

/** A WebSocket class that records what the SDK sends and counts connections. */
function spying(transform) {
  const sockets = [];
  class Spy extends WebSocket {
    constructor(url) {
      super(url);
      this.sent = [];
      sockets.push(this);
    }
    send(data) {
      this.sent.push({ at: Date.now(), ...JSON.parse(data) });
      super.send(data);
    }
    set onmessage(fn) {
      super.onmessage = transform ? (e) => transform(e, fn) : fn;
    }
    get onmessage() {
      return super.onmessage;
    }
  }
  return { Spy, sockets, sent: (type) => sockets.flatMap((s) => s.sent).filter((m) => m.type === type) };
}

/** A WebSocket class that only counts the connections made with it. */
function counting() {
  const sockets = [];
  class Counted extends WebSocket {
    constructor(url) {
      super(url);
      sockets.push(this);
    }
  }
  return { Counted, sockets };
}

/** A client of `user` of `tid` with memory storage (or `storage`), on `url` (or the shared hub). */
function client(tid, user, o = {}) {
  const reasons = [];
  const c = new PresenceClient({
    url: o.url ?? hub.wsUrl,
    WebSocket: o.WebSocket ?? WebSocket,
    storage: o.storage,
    backoffMs: 50,
    token: async (reason) => {
      reasons.push(reason);
      return o.token ? o.token(reason) : mint(tid, user);
    },
  });
  c.reasons = reasons;
  c.ends = [];
  c.closes = [];
  c.on("end", (e) => c.ends.push(e));
  c.on("close", (e) => c.closes.push(e));
  return c;
}

const opened = (c) => until(() => c.state === "open", 5000, "welcome");

function memoryStorage() {
  const m = new Map();
  return { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => m.set(k, String(v)), map: m };
}

test("welcome names the user and a reload keeps the tab id", async (t) => {
  const tid = await tenant();
  const storage = memoryStorage();
  const first = client(tid, "sam", { storage }).start();
  t.after(() => first.close());
  await opened(first);
  assert.equal(first.user.id, "sam");
  assert.equal(first.user.tenant, tid);
  assert.deepEqual(first.reasons, ["hello"]);
  first.close();
  // The same storage is what sessionStorage gives a reloaded page.
  const reloaded = client(tid, "sam", { storage }).start();
  t.after(() => reloaded.close());
  await opened(reloaded);
  assert.equal(reloaded.tab, first.tab);
  // Without a storage (Node), each client is a tab of its own.
  const other = client(tid, "sam").start();
  t.after(() => other.close());
  await opened(other);
  assert.notEqual(other.tab, first.tab);
  assert.match(other.tab, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});

test("an open tab nobody touches sends nothing and stays offline", async (t) => {
  const tid = await tenant();
  const spy = spying();
  const c = client(tid, "sam", { WebSocket: spy.Spy }).start();
  t.after(() => c.close());
  await opened(c);
  const [hello] = spy.sent("hello");
  assert.ok(hello.idle_ms >= IDLE_MS, `hello claims no interaction: ${hello.idle_ms}`);
  // Three activity intervals without interaction: no frame, still offline.
  const quietUntil = Date.now() + 3 * INTERVAL_MS;
  await until(() => Date.now() > quietUntil, 5000);
  assert.deepEqual(spy.sent("activity"), []);
  assert.equal(await hub.status(tid, "sam"), "offline");
});

test("activity is throttled to the interval with a trailing edge and the right idle_ms", async (t) => {
  const tid = await tenant();
  const spy = spying();
  const c = client(tid, "sam", { WebSocket: spy.Spy }).start();
  t.after(() => c.close());
  await opened(c);
  // A person moves the mouse every 20 ms for 1 s.
  const start = Date.now();
  let lastInteraction;
  while (Date.now() - start < 1000) {
    c.interacted();
    lastInteraction = Date.now();
    await new Promise((r) => setTimeout(r, 20));
  }
  const stopped = Date.now();
  // The trailing report covers the last interaction, then nothing more.
  await until(() => spy.sent("activity").some((m) => m.at >= lastInteraction), 2000, "the trailing report");
  const quietUntil = Date.now() + 3 * INTERVAL_MS;
  await until(() => Date.now() > quietUntil, 5000);
  const sent = spy.sent("activity");
  assert.ok(sent[0].at - start < 50, "the first interaction is reported at once");
  assert.ok(sent[0].idle_ms < 50, `leading idle_ms ${sent[0].idle_ms}`);
  for (let i = 1; i < sent.length; i++) {
    assert.ok(sent[i].at - sent[i - 1].at >= INTERVAL_MS - 5, `reports ${i - 1} and ${i} too close`);
  }
  assert.ok(sent.length <= Math.ceil(1000 / INTERVAL_MS) + 2, `${sent.length} reports in 1 s`);
  const trailing = sent[sent.length - 1];
  assert.ok(trailing.at >= stopped - 25, "the last report follows the last interaction");
  assert.ok(
    Math.abs(trailing.idle_ms - (trailing.at - lastInteraction)) <= 25,
    `trailing idle_ms ${trailing.idle_ms} vs ${trailing.at - lastInteraction}`,
  );
  assert.equal(await hub.status(tid, "sam"), "online");
});

test("the directory roster follows a user online then offline, with counters", async (t) => {
  const tid = await tenant();
  const admin = client(tid, "ann").start();
  t.after(() => admin.close());
  const changes = [];
  admin.watch("directory", (r, cause) => changes.push({ r, cause }));
  await until(() => changes.length, 5000, "the snapshot");
  const snap = changes[0].r;
  assert.deepEqual(snap.users.map((u) => u.id).sort(), ["ann", "att", "kim", "sam"]);
  assert.deepEqual(snap.stats, { online: 0, offline: 4, active: 4, inactive: 0 });

  const sam = client(tid, "sam").start();
  t.after(() => sam.close());
  await opened(sam);
  sam.interacted();
  const samOf = () => admin.roster("directory").users.find((u) => u.id === "sam");
  await until(() => samOf().status === "online", 5000, "sam online");
  assert.equal(admin.roster("directory").stats.online, 1);
  const wentOnline = samOf().since;
  await until(() => samOf().status === "offline", IDLE_MS + 2000, "sam offline");
  assert.ok(samOf().since - wentOnline >= IDLE_MS - 50, "offline at the deadline");
  assert.equal(samOf().last_seen, wentOnline);
  assert.deepEqual(admin.roster("directory").stats, { online: 0, offline: 4, active: 4, inactive: 0 });
});

test("duplicated and reordered presence frames are applied by their v", async (t) => {
  const tid = await tenant();
  let held = null;
  // Each presence frame arrives twice, and the previous one again after it.
  const spy = spying((e, deliver) => {
    const m = JSON.parse(e.data);
    deliver(e);
    if (m.type !== "presence") return;
    deliver(e);
    if (held) deliver(held);
    held = e;
  });
  const admin = client(tid, "ann", { WebSocket: spy.Spy }).start();
  t.after(() => admin.close());
  const statuses = [];
  admin.watch("directory", (r, cause) => {
    if (cause.type === "presence" && cause.user === "att") statuses.push(r.users.find((u) => u.id === "att").status);
  });
  await opened(admin);
  const att = client(tid, "att").start();
  t.after(() => att.close());
  await opened(att);
  att.interacted();
  await until(() => statuses.includes("offline"), IDLE_MS + 3000, "att offline");
  // Let the stale copy of the online frame arrive after the offline one.
  await until(() => held && JSON.parse(held.data).status === "offline", 2000);
  assert.deepEqual(statuses, ["online", "offline"], "each transition applied once, none undone");
  assert.equal(admin.roster("directory").users.find((u) => u.id === "att").status, "offline");
});

test("directory changes reach the roster: user, user_removed, stats", async (t) => {
  const tid = await tenant();
  const admin = client(tid, "ann").start();
  t.after(() => admin.close());
  const causes = [];
  admin.watch("directory", (_, cause) => causes.push(cause.type));
  await until(() => admin.roster("directory").stats, 5000, "snapshot");
  const find = (id) => admin.roster("directory").users.find((u) => u.id === id);

  await hub.admin("PUT", `/v1/tenants/${tid}/users/sam`, { away_message: "back at 3" });
  await until(() => find("sam").away_message === "back at 3", 5000, "the user delta");
  await hub.admin("PUT", `/v1/tenants/${tid}/users/new`, { name: "New One", email: "n@example.test" });
  await until(() => find("new") && admin.roster("directory").stats.active === 5, 5000, "the new user");
  await hub.admin("POST", `/v1/tenants/${tid}/users/deactivate`, { ids: ["new"] });
  await until(() => find("new").state === "inactive", 5000, "deactivated");
  assert.deepEqual(admin.roster("directory").stats, { online: 0, offline: 4, active: 4, inactive: 1 });
  await hub.admin("DELETE", `/v1/tenants/${tid}/users/new`);
  await until(() => !find("new"), 5000, "removed");
  assert.ok(causes.includes("user") && causes.includes("user_removed") && causes.includes("stats"), causes.join());
});

test("a bulk sync's fresh snapshot replaces the directory in one change", async (t) => {
  const tid = await tenant();
  const admin = client(tid, "ann").start();
  t.after(() => admin.close());
  const causes = [];
  admin.watch("directory", (_, cause) => causes.push(cause.type));
  await until(() => admin.roster("directory").stats, 5000, "snapshot");
  const items = Array.from({ length: 80 }, (_, i) => ({
    op: "upsert_user",
    id: `n${i}`,
    user: { name: `N ${i}`, email: `n${i}@example.test` },
  }));
  await hub.admin("POST", `/v1/tenants/${tid}/batch`, { items });
  await until(() => admin.roster("directory").users.length === 84, 5000, "the 80 new users");
  // One frame, one render: a second snapshot of the same subscription,
  // not 80 `user` deltas (the counters' own `stats` frame follows).
  assert.deepEqual(causes.filter((c) => c !== "stats"), ["snapshot", "snapshot"]);
  assert.equal(admin.roster("directory").stats.active, 84);
});

test("attendants and team rosters follow SPEC §4; a refusal is an error, not data", async (t) => {
  const tid = await tenant();
  const views = {};
  const watch = async (user, roster) => {
    const c = client(tid, user).start();
    t.after(() => c.close());
    c.watch(roster, (r) => (views[`${user} ${roster}`] = r));
    await until(() => views[`${user} ${roster}`], 5000, `${user} ${roster}`);
    return views[`${user} ${roster}`];
  };
  const att = await watch("att", "attendants");
  assert.equal(att.error, null);
  assert.deepEqual(att.users.map((u) => u.id).sort(), ["att", "kim"]);
  assert.equal(att.users[0].name, undefined, "a standard user sees public fields only");
  const sam = await watch("sam", "attendants");
  assert.equal(sam.error.code, "forbidden");
  assert.deepEqual(sam.users, []);
  assert.equal((await watch("kim", "attendants")).error.code, "forbidden");
  const team = await watch("sam", "team:ops");
  assert.deepEqual(team.users.map((u) => [u.id, u.teams]), [["sam", [{ id: "ops", as: "supervisor" }]]]);
  assert.equal((await watch("sam", "team:crm")).error.code, "forbidden");
  assert.equal((await watch("ann", "team:nope")).error.code, "not_found");
});

test("deactivation ends the tab for good with 4003; logout with 4004 in every tab", async (t) => {
  const tid = await tenant();
  const spy = spying();
  const sam = client(tid, "sam", { WebSocket: spy.Spy }).start();
  t.after(() => sam.close());
  await opened(sam);
  await hub.admin("POST", `/v1/tenants/${tid}/users/deactivate`, { ids: ["sam"] });
  await until(() => sam.ends.length, 5000, "the end event");
  assert.equal(sam.ends[0].code, 4003);
  assert.match(sam.ends[0].reason, /deactivated/);
  assert.equal(sam.state, "ended");
  // No reconnection: many backoff periods later, still one socket.
  const later = Date.now() + 500;
  await until(() => Date.now() > later, 2000);
  assert.equal(spy.sockets.length, 1);
  assert.deepEqual(sam.closes, []);

  const one = client(tid, "att").start();
  const two = client(tid, "att").start();
  t.after(() => (one.close(), two.close()));
  await opened(one);
  await opened(two);
  one.logout();
  await until(() => one.ends.length && two.ends.length, 5000, "both tabs ended");
  assert.deepEqual([one.ends[0].code, two.ends[0].code], [4004, 4004]);
});

test("a refused token (4001) is replaced by a fresh one and the tab reconnects", async (t) => {
  const tid = await tenant();
  const expired = mint(tid, "sam", 60, Math.floor(Date.now() / 1000) - 3600);
  const c = client(tid, "sam", { token: (reason) => (reason === "hello" ? expired : mint(tid, "sam")) }).start();
  t.after(() => c.close());
  await opened(c);
  assert.deepEqual(c.reasons, ["hello", "rejected"]);
  assert.equal(c.closes[0].code, 4001);
});

test("the token is refreshed before it expires and the tab stays open", async (t) => {
  const tid = await tenant();
  const spy = spying();
  const c = client(tid, "sam", { WebSocket: spy.Spy, token: () => mint(tid, "sam", 3) }).start();
  t.after(() => c.close());
  await opened(c);
  const { exp } = jwtClaims(spy.sent("hello")[0].token);
  // Past the first token's expiry plus the hub's 1 s leeway and 2 s bound.
  await until(() => Date.now() > exp * 1000 + 3500, 10000);
  assert.deepEqual(c.closes, [], "never closed");
  assert.equal(c.state, "open");
  const refreshes = spy.sent("refresh");
  assert.ok(refreshes.length >= 1);
  assert.ok(refreshes[0].at < exp * 1000, "refreshed before exp");
  assert.ok(c.reasons.includes("refresh"));
});

test("a duplicated tab (same tab id, 4000) becomes a tab of its own", async (t) => {
  const tid = await tenant();
  const storage = memoryStorage();
  const a = client(tid, "sam", { storage }).start();
  t.after(() => a.close());
  await opened(a);
  const copy = memoryStorage();
  for (const [k, v] of storage.map) copy.setItem(k, v);
  const b = client(tid, "sam", { storage: copy }).start();
  t.after(() => b.close());
  await until(() => a.closes.length, 5000, "the 4000 close");
  assert.equal(a.closes[0].code, 4000);
  await opened(a);
  await opened(b);
  assert.notEqual(a.tab, b.tab);
});

test("after a node restart (1012) the tab reconnects at once and re-subscribes", async (t) => {
  const port = await freePort();
  const own = await Hub.start({ idleTimeoutMs: IDLE_MS, activityIntervalMs: INTERVAL_MS, port });
  t.after(() => own.stop());
  await own.seed("r", [["ann", "admin"], ["sam"]]);
  const c = new PresenceClient({ url: own.wsUrl, WebSocket, token: async () => mint("r", "ann"), backoffMs: 50 });
  t.after(() => c.close());
  const closes = [];
  c.on("close", (e) => closes.push(e));
  const snapshots = [];
  c.watch("directory", (r, cause) => cause.type === "snapshot" && snapshots.push(r));
  c.start();
  await until(() => snapshots.length === 1, 5000, "first snapshot");
  await own.terminate();
  await until(() => closes.length, 5000, "the close");
  assert.equal(closes[0].code, 1012);
  assert.equal(closes[0].retryInMs, 0);
  await own.restart();
  await until(() => snapshots.length === 2, 10000, "snapshot after the restart");
  assert.equal(c.state, "open");
  assert.deepEqual(snapshots[1].users.map((u) => u.id).sort(), ["ann", "sam"]);
});

// Closes that must arrive while the tab is still sending (SPEC §9): the hub
// lingers for the page's close frame instead of closing TCP with the page's
// frames unread, which Linux answers with a reset (the page saw 1006).

/** Any frame rate: the tab is still sending when the hub closes it for another reason. */
const ANY_RATE = { PRESENCE_RATE_PER_SEC: "1000000", PRESENCE_RATE_BURST: "1000000" };

/** A hub of this test's own, stopped when the test ends. */
async function ownHub(t, o = {}) {
  const own = await Hub.start({ idleTimeoutMs: IDLE_MS, activityIntervalMs: INTERVAL_MS, ...o });
  t.after(() => own.stop());
  return own;
}

/** The `close` event of a socket, as a promise. */
const closeOf = (sock) => new Promise((ok) => sock.addEventListener("close", ok, { once: true }));

/**
 * Sends `frame` on the SDK's own socket in long bursts until the socket is
 * no longer open; resolves with the number of frames sent. The hub's
 * receive buffer stays full, and the close arrives in the middle of a
 * burst, whose next writes would meet the reset a hub answers with when it
 * closes TCP with our frames unread (ws then reports 1006).
 */
function flood(sock, frame = { type: "activity", idle_ms: 0 }) {
  const text = JSON.stringify(frame);
  let sent = 0;
  return new Promise((done) => {
    const burst = () => {
      if (sock.readyState !== WebSocket.OPEN) return done(sent);
      // Ahead of the hub, without queueing without bound in the client.
      if (sock.bufferedAmount < 1 << 20) {
        for (let i = 0; i < 2000; i++) sock.send(text);
        sent += 2000;
      }
      setImmediate(burst);
    };
    burst();
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test("a flooding tab reads its rate_limited errors, then 4008, and the SDK stops for good", async (t) => {
  const tid = await tenant();
  const { Counted, sockets } = counting();
  const c = client(tid, "sam", { WebSocket: Counted }).start();
  t.after(() => c.close());
  const errors = [];
  c.on("error", (m) => errors.push(m.code));
  await opened(c);
  const sock = c.ws;
  const closed = closeOf(sock);
  const sent = await flood(sock);
  const e = await closed;
  assert.deepEqual([e.code, e.reason, e.wasClean], [4008, "too many messages", true], `after ${sent} frames`);
  assert.ok(errors.includes("rate_limited"), `the error frames before the close arrived too: ${errors}`);
  await until(() => c.ends.length, 5000, "the end event");
  assert.deepEqual(c.ends, [{ code: 4008, reason: "too many messages" }]);
  assert.equal(c.state, "ended");
  // Many backoff periods later: no reconnection, no `close` event.
  await sleep(500);
  assert.equal(sockets.length, 1);
  assert.deepEqual(c.closes, []);
});

test("a tab still sending when its user is deactivated gets 4003 and the SDK stops", async (t) => {
  const own = await ownHub(t, { env: ANY_RATE });
  await own.seed("d", [["sam"]]);
  const { Counted, sockets } = counting();
  const c = client("d", "sam", { url: own.wsUrl, WebSocket: Counted }).start();
  t.after(() => c.close());
  await opened(c);
  const sock = c.ws;
  const closed = closeOf(sock);
  const sending = flood(sock);
  await sleep(100);
  await own.admin("POST", "/v1/tenants/d/users/deactivate", { ids: ["sam"] });
  const e = await closed;
  const sent = await sending;
  assert.deepEqual([e.code, e.wasClean], [4003, true], `${e.reason} after ${sent} frames`);
  await until(() => c.ends.length, 5000, "the end event");
  assert.equal(c.ends[0].code, 4003);
  await sleep(500);
  assert.equal(sockets.length, 1);
  assert.deepEqual(c.closes, []);
});

test("a tab still sending at shutdown (SIGTERM) gets 1012 and the SDK reconnects", async (t) => {
  const own = await ownHub(t, { port: await freePort(), env: ANY_RATE });
  await own.seed("s", [["sam"]]);
  const c = client("s", "sam", { url: own.wsUrl }).start();
  t.after(() => c.close());
  await opened(c);
  const first = c.ws;
  const closed = closeOf(first);
  const sending = flood(first);
  await sleep(100);
  await own.terminate();
  const e = await closed;
  const sent = await sending;
  assert.deepEqual([e.code, e.wasClean], [1012, true], `${e.reason} after ${sent} frames`);
  assert.equal(c.closes[0].code, 1012);
  assert.equal(c.closes[0].retryInMs, 0);
  await own.restart();
  await until(() => c.state === "open" && c.ws !== first, 10000, "the reconnection");
  assert.deepEqual(c.ends, []);
});

test("the page's own close code is echoed by the hub", async (t) => {
  const tid = await tenant();
  const c = client(tid, "sam").start();
  t.after(() => c.close());
  for (const code of [1000, 3000, 4321]) {
    await opened(c);
    const sock = c.ws;
    const closed = closeOf(sock);
    sock.close(code, "bye");
    const e = await closed;
    assert.deepEqual([e.code, e.wasClean], [code, true], e.reason);
    // Not a code that ends the SDK: it reconnects.
    await until(() => c.ws && c.ws !== sock, 5000, "the reconnection");
  }
  assert.deepEqual(
    c.closes.map((x) => x.code),
    [1000, 3000, 4321],
  );
});

test("a tab over the user's tab limit ends with 4029 and does not retry", async (t) => {
  const own = await ownHub(t, { env: { PRESENCE_MAX_TABS_PER_USER: "1" } });
  await own.seed("m", [["sam"]]);
  const first = client("m", "sam", { url: own.wsUrl }).start();
  t.after(() => first.close());
  await opened(first);
  const { Counted, sockets } = counting();
  const second = client("m", "sam", { url: own.wsUrl, WebSocket: Counted }).start();
  t.after(() => second.close());
  await until(() => second.ends.length, 5000, "the end event");
  assert.equal(second.ends[0].code, 4029);
  assert.equal(second.state, "ended");
  await sleep(500);
  assert.equal(sockets.length, 1);
  assert.deepEqual(second.closes, []);
  assert.equal(first.state, "open");
});
