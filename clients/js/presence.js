// presence.js — the browser (and Node) SDK of the presence hub.
//
// One WebSocket per tab to `/v1/ws` (SPEC §5): `hello` with a token from the
// page's own provider, `activity` while a person really interacts (throttled
// to the hub's `activity_interval_ms`, leading and trailing edge, nothing while
// nobody interacts), `refresh` before the token expires, reconnection with
// jittered exponential backoff, and live rosters kept from snapshots and
// deltas with the `v` rule. No dependencies; plain ES2020.

/**
 * The SDK's version: the hub's protocol version (the `presence-protocol`
 * crate's, in `package.json` too; `tests/package.test.js` holds them equal).
 * Sent in `hello` as `client`.
 */
export const VERSION = "0.1.0";

/**
 * Close codes after which the tab must not reconnect by itself: deactivated
 * or forbidden, logged out, a policy violation (a flood or oversized frames
 * would only be repeated), too many tabs for the user. 4001 is not among
 * them: the reconnection asks the token provider for a fresh token.
 */
const TERMINAL = [4003, 4004, 4008, 4029];
/**
 * Browser events that prove a person is at the keyboard or mouse, listened to
 * in the capture phase so no page handler can hide them. `focus` is the
 * window's own (the person came back to this tab), listened to without
 * capture: an element focused by the page's script proves nothing.
 */
const INTERACTIONS = ["pointermove", "pointerdown", "keydown", "wheel", "touchstart"];
/** `idle_ms` when this tab has never seen an interaction: no proof at all. */
const NO_PROOF = 2 ** 31;
const TAB_KEY = "presence.tab";
const LAST_KEY = "presence.last";

/** A random v4 UUID; `getRandomValues` also exists outside secure contexts. */
function uuid() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 15) | 64;
  b[8] = (b[8] & 63) | 128;
  const h = [...b].map((x) => (x + 256).toString(16).slice(1)).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** The claims of a JWT (not verified: the hub does that). */
export function jwtClaims(token) {
  try {
    const p = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(p));
  } catch {
    return {};
  }
}

/** `sessionStorage` where there is one (a reload keeps it), else memory. */
function defaultStorage() {
  try {
    const s = globalThis.sessionStorage;
    s.setItem(TAB_KEY + ".probe", "1");
    s.removeItem(TAB_KEY + ".probe");
    return s;
  } catch {
    const m = new Map();
    return { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => m.set(k, String(v)) };
  }
}

export class PresenceClient {
  /**
   * @param {import("./presence").PresenceOptions} opts
   */
  constructor(opts) {
    const loc = globalThis.location;
    if (!opts.url && !loc) throw new Error("presence: `url` is required outside a browser");
    this.opts = opts;
    this.url = opts.url || `${loc?.protocol === "https:" ? "wss" : "ws"}://${loc?.host}/v1/ws`;
    this.WS = opts.WebSocket || globalThis.WebSocket;
    this.store = opts.storage || defaultStorage();
    this.tab = this.store.getItem(TAB_KEY) || this.#newTab();
    this.last = Number(this.store.getItem(LAST_KEY)) || 0;
    this.state = "idle";
    this.user = null;
    this.rosters = new Map();
    this.handlers = {};
    this.attempt = 0;
    this.reqId = 0;
    this.sentAt = 0;
    this.timers = {};
    this.ws = null;
    this.#track(opts.target === undefined ? (globalThis.document ? globalThis : null) : opts.target);
  }

  #newTab() {
    const t = uuid();
    this.store.setItem(TAB_KEY, t);
    return t;
  }

  #track(target) {
    if (!target) return;
    const mark = () => this.interacted();
    // Leaving the page: report a pending interaction now, and keep its time
    // for the reloaded page's `hello`.
    const save = () => {
      if (this.timers.activity) {
        this.#clear("activity");
        this.#activity();
      }
      this.store.setItem(LAST_KEY, this.last);
    };
    const online = () => this.timers.retry && this.#connect("hello");
    const o = { capture: true, passive: true };
    for (const ev of INTERACTIONS) target.addEventListener(ev, mark, o);
    target.addEventListener("focus", mark);
    target.addEventListener("pagehide", save);
    target.addEventListener("online", online);
    this.untrack = () => {
      for (const ev of INTERACTIONS) target.removeEventListener(ev, mark, o);
      target.removeEventListener("focus", mark);
      target.removeEventListener("pagehide", save);
      target.removeEventListener("online", online);
    };
  }

  /** Opens the connection; the constructor does not, so handlers can be set first. */
  start() {
    if (this.state === "idle") this.#connect("hello");
    return this;
  }

  /**
   * Subscribes to `event`: "welcome", "state", "close", "end" or "error".
   * @returns {() => void} unsubscribes
   */
  on(event, fn) {
    (this.handlers[event] ||= new Set()).add(fn);
    return () => this.handlers[event].delete(fn);
  }

  #emit(event, arg) {
    for (const fn of this.handlers[event] || []) fn(arg);
  }

  #set(state) {
    this.state = state;
    this.#emit("state", state);
  }

  #clear(name) {
    clearTimeout(this.timers[name]);
    delete this.timers[name];
  }

  #later(name, ms, fn) {
    this.#clear(name);
    this.timers[name] = setTimeout(() => {
      delete this.timers[name];
      fn();
    }, ms);
  }

  #send(msg) {
    if (this.state === "open") this.ws.send(JSON.stringify(msg));
  }

  /** Milliseconds since the last real interaction in this tab. */
  idleMs() {
    return this.last ? Math.max(0, Date.now() - this.last) : NO_PROOF;
  }

  /**
   * Records a real interaction (the SDK does this itself for pointer,
   * keyboard, wheel, touch and focus events). Reports it at once if nothing
   * was sent for an activity interval, else once at the end of the interval.
   */
  interacted() {
    this.last = Date.now();
    if (this.state !== "open" || this.timers.activity) return;
    const wait = this.sentAt + this.interval - this.last;
    if (wait <= 0) this.#activity();
    else this.#later("activity", wait, () => this.#activity());
  }

  #activity() {
    const idle = this.idleMs();
    if (idle >= this.idleTimeout) return;
    this.#send({ type: "activity", idle_ms: idle });
    this.sentAt = Date.now();
    this.store.setItem(LAST_KEY, this.last);
  }

  async #connect(reason) {
    this.#clear("retry");
    this.#set("connecting");
    let token;
    try {
      token = await this.opts.token(reason);
    } catch (e) {
      return this.#closed(0, `token provider failed: ${e?.message || e}`);
    }
    if (this.state !== "connecting") return;
    this.lastToken = token;
    const ws = (this.ws = new this.WS(this.url));
    const mine = (fn) => (e) => ws === this.ws && fn(e);
    ws.onopen = mine(() => {
      this.hello = { at: Date.now(), idle: this.idleMs() };
      const hello = { type: "hello", token, tab: this.tab, idle_ms: this.hello.idle };
      ws.send(JSON.stringify({ ...hello, client: this.opts.client || `presence.js/${VERSION}` }));
    });
    ws.onmessage = mine((e) => this.#message(JSON.parse(e.data)));
    ws.onclose = mine((e) => this.#closed(e.code, e.reason));
    // A close event follows every error; Node's `ws` throws an error nobody listens to.
    ws.onerror = () => {};
    // A socket that never gets to `welcome` (a black-holed network) is retried.
    this.#later("welcome", 10000, () => ws.close());
  }

  #closed(code, reason) {
    for (const t of ["activity", "refresh", "welcome"]) this.#clear(t);
    this.ws = null;
    if (this.state === "ended") return;
    if (TERMINAL.includes(code)) {
      this.untrack?.();
      this.#set("ended");
      return this.#emit("end", { code, reason });
    }
    // 4000: another live page took this tab id (a duplicated tab copies
    // sessionStorage), so this page becomes a tab of its own.
    if (code === 4000) this.tab = this.#newTab();
    const base = this.opts.backoffMs || 500;
    const max = this.opts.maxBackoffMs || 30000;
    const delay =
      code === 1012 && this.attempt === 0 ? 0 : Math.min(max, base * 2 ** this.attempt) * (0.5 + Math.random() / 2);
    this.attempt++;
    this.#set("closed");
    this.#emit("close", { code, reason, retryInMs: Math.round(delay) });
    this.#later("retry", delay, () => this.#connect(code === 4001 ? "rejected" : "hello"));
  }

  #message(m) {
    const r = this.rosters.get(m.roster);
    switch (m.type) {
      case "welcome":
        this.#clear("welcome");
        this.attempt = 0;
        this.user = m.user;
        this.idleTimeout = m.idle_timeout_ms;
        this.interval = m.activity_interval_ms;
        this.skew = m.server_time - Date.now();
        // A `hello` that carried proof counts as the last report.
        this.sentAt = this.hello.idle < this.idleTimeout ? this.hello.at : 0;
        this.#set("open");
        for (const name of this.rosters.keys()) this.#subscribe(name);
        this.#scheduleRefresh();
        return this.#emit("welcome", m.user);
      case "snapshot":
        if (!r || r.id !== m.id) return;
        r.users = new Map(m.users.map((u) => [u.id, u]));
        r.stats = m.stats || null;
        r.error = null;
        return this.#notify(r, m);
      case "presence": {
        const u = r?.users.get(m.user);
        if (!u || m.v <= u.v) return;
        u.status = m.status;
        u.since = m.at;
        u.v = m.v;
        u.last_seen = m.status === "online" ? m.at : m.at - this.idleTimeout;
        return this.#notify(r, m);
      }
      case "user": {
        if (!r) return;
        const held = r.users.get(m.user.id);
        // The directory change is new; its presence fields may be older than
        // a delta already applied.
        const keep = held && held.v > m.user.v;
        const { status, since, last_seen, v } = held || {};
        r.users.set(m.user.id, keep ? { ...m.user, status, since, last_seen, v } : m.user);
        return this.#notify(r, m);
      }
      case "user_removed":
        if (r?.users.delete(m.user)) this.#notify(r, m);
        return;
      case "stats":
        if (!r) return;
        r.stats = { online: m.online, offline: m.offline, active: m.active, inactive: m.inactive };
        return this.#notify(r, m);
      case "error": {
        const target = [...this.rosters.values()].find((x) => (m.id != null ? x.id === m.id : x.name === m.roster));
        if (!target) return this.#emit("error", m);
        target.error = { code: m.code, message: m.message };
        target.users = new Map();
        target.stats = null;
        return this.#notify(target, m);
      }
    }
  }

  #scheduleRefresh() {
    const token = this.lastToken;
    const { exp, iat } = jwtClaims(token || "");
    if (!exp) return;
    const now = Date.now() + this.skew;
    const life = exp * 1000 - (iat ? iat * 1000 : now);
    // Refresh a fifth of the lifetime before expiry, between 1 s and 60 s.
    const margin = Math.min(60000, Math.max(1000, life / 5));
    this.#later("refresh", Math.max(0, exp * 1000 - now - margin), async () => {
      try {
        const t = await this.opts.token("refresh");
        this.lastToken = t;
        this.#send({ type: "refresh", token: t });
        this.#scheduleRefresh();
      } catch (e) {
        // The hub closes the tab with 4001 at expiry; the reconnect asks again.
        this.#emit("error", { code: "refresh_failed", message: String(e?.message || e) });
      }
    });
  }

  #subscribe(name) {
    const r = this.rosters.get(name);
    r.id = ++this.reqId;
    this.#send({ type: "subscribe", id: r.id, roster: name });
  }

  #notify(r, cause) {
    const view = this.roster(r.name);
    for (const fn of r.fns) fn(view, cause);
  }

  /**
   * The current state of a watched roster: its users, the counters (on
   * `directory`), and the error that ended or refused it, if any.
   */
  roster(name) {
    const r = this.rosters.get(name);
    return r && { name, users: [...r.users.values()], stats: r.stats, error: r.error };
  }

  /**
   * Watches a roster ("directory", "attendants" or "team:<id>"); `onChange`
   * gets the roster after its snapshot and after every change, with the
   * frame that caused it. Kept across reconnects.
   * @returns {() => void} stops watching
   */
  watch(name, onChange) {
    let r = this.rosters.get(name);
    if (!r) {
      r = { name, users: new Map(), stats: null, error: null, fns: new Set(), id: 0 };
      this.rosters.set(name, r);
      this.#subscribe(name);
    }
    r.fns.add(onChange);
    return () => {
      r.fns.delete(onChange);
      if (r.fns.size || this.rosters.get(name) !== r) return;
      this.rosters.delete(name);
      this.#send({ type: "unsubscribe", id: ++this.reqId, roster: name });
    };
  }

  /** Logs the user out everywhere: every tab of theirs is closed (4004). */
  logout() {
    this.#send({ type: "logout" });
  }

  /** Closes this tab's connection for good. */
  close() {
    this.untrack?.();
    this.#set("ended");
    for (const t of Object.keys(this.timers)) this.#clear(t);
    this.ws?.close(1000);
    this.ws = null;
  }
}

/** Creates a client and connects it. */
export function connect(opts) {
  return new PresenceClient(opts).start();
}
