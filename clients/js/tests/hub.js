// A real presence-server process for the JS tests: started on a free
// 127.0.0.1 port with a short idle timeout, a temporary data dir, a known
// token secret and admin key; plus an admin API client and HS256 minting.

import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const SECRET = "js-test-secret-0123456789";
export const ADMIN_KEY = "js-test-admin-key-0123456789";
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

/** The WebSocket constructor for Node: the global one (Node 22+) or `ws`. */
export const WebSocket = globalThis.WebSocket ?? (await import("ws")).WebSocket;

/** The hub binary: `PRESENCE_BIN` (set by the Rust test), else the debug build. */
export function hubBinary() {
  const bin =
    process.env.PRESENCE_BIN ||
    join(process.env.CARGO_TARGET_DIR || join(REPO, "target"), "debug", "presence-server");
  if (!existsSync(bin)) {
    throw new Error(`no hub binary at ${bin}: run \`cargo build -p presence-server\` or set PRESENCE_BIN`);
  }
  return bin;
}

/** A port nobody listens on right now (for a hub restarted on the same address). */
export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.on("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

const b64url = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");

/** An HS256 JWT for `user` of `tenant`, valid `ttlSecs` from `iat` (default now). */
export function mint(tenant, user, ttlSecs = 3600, iat = Math.floor(Date.now() / 1000)) {
  const head = `${b64url({ alg: "HS256", typ: "JWT" })}.${b64url({ sub: user, tid: tenant, iat, exp: iat + ttlSecs })}`;
  return `${head}.${createHmac("sha256", SECRET).update(head).digest("base64url")}`;
}

/** Polls `check` until it returns a truthy value, or fails after `ms`. */
export async function until(check, ms = 5000, what = "condition") {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export class Hub {
  /**
   * @param {{idleTimeoutMs?: number, activityIntervalMs?: number, port?: number,
   *          args?: string[], env?: Record<string,string>}} o
   */
  static async start(o = {}) {
    const hub = new Hub();
    hub.dataDir = mkdtempSync(join(tmpdir(), "presence-js-"));
    hub.port = o.port ?? 0;
    hub.args = o.args ?? [];
    hub.env = {
      PRESENCE_JWT_SECRET: SECRET,
      PRESENCE_ADMIN_KEY: ADMIN_KEY,
      PRESENCE_IDLE_TIMEOUT_MS: String(o.idleTimeoutMs ?? 3000),
      PRESENCE_ACTIVITY_INTERVAL_MS: String(o.activityIntervalMs ?? 500),
      PRESENCE_SHUTDOWN_GRACE_MS: "1000",
      PRESENCE_DATA_DIR: hub.dataDir,
      ...o.env,
    };
    await hub.#spawn();
    return hub;
  }

  async #spawn() {
    const env = { NO_COLOR: "1", PATH: process.env.PATH };
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("PRESENCE_")) env[k] = v;
    delete env.PRESENCE_BIN;
    Object.assign(env, this.env, { PRESENCE_LISTEN: `127.0.0.1:${this.port}` });
    this.proc = spawn(hubBinary(), this.args, { env, stdio: ["ignore", "pipe", "pipe"] });
    this.log = "";
    this.stdout = "";
    this.proc.stdout.on("data", (d) => (this.stdout += d));
    this.exited = new Promise((r) => this.proc.on("exit", r));
    const addr = await new Promise((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`the hub did not start; log:\n${this.log}`)), 15000);
      this.proc.on("exit", (c) => fail(new Error(`the hub exited with ${c}; log:\n${this.log}`)));
      this.proc.stderr.on("data", (d) => {
        this.log += d;
        const m = /presence hub listening.*?addr=([0-9.:]+)/.exec(this.log);
        if (m) {
          clearTimeout(timer);
          ok(m[1]);
        }
      });
    });
    this.addr = addr;
    this.port = Number(addr.split(":")[1]);
    this.base = `http://${addr}`;
    this.wsUrl = `ws://${addr}/v1/ws`;
  }

  /** SIGTERM (tabs get 1012) and wait for the exit. */
  async terminate() {
    this.proc.kill("SIGTERM");
    await this.exited;
  }

  /** Starts the hub again on the same port and data dir. */
  async restart() {
    await this.#spawn();
  }

  async stop() {
    this.proc.kill("SIGKILL");
    await this.exited;
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** Calls the admin API; fails unless the status is 2xx. */
  async admin(method, path, body, bearer = ADMIN_KEY) {
    const r = await fetch(this.base + path, {
      method,
      headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  /** A tenant with `users` (`[id, profile]` pairs) and teams (`[id, crm, [[uid, as]...]]`). */
  async seed(tenant, users, teams = []) {
    await this.admin("PUT", `/v1/tenants/${tenant}`, { user_limit: 100 });
    for (const [id, profile = "standard"] of users) {
      const name = id[0].toUpperCase() + id.slice(1);
      await this.admin("PUT", `/v1/tenants/${tenant}/users/${id}`, {
        name: `${name} Test`,
        nickname: name,
        email: `${id}@example.test`,
        profile,
      });
    }
    for (const [team, crm, members] of teams) {
      await this.admin("PUT", `/v1/tenants/${tenant}/teams/${team}`, { name: team, crm, active: true });
      for (const [uid, as] of members) {
        await this.admin("PUT", `/v1/tenants/${tenant}/teams/${team}/members/${uid}`, { as });
      }
    }
  }

  /** The user's status as the hub has it. */
  async status(tenant, uid) {
    return (await this.admin("GET", `/v1/tenants/${tenant}/users/${uid}`)).status;
  }
}
