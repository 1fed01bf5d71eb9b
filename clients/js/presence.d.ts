// Types of presence.js, the SDK of the presence hub (wire protocol: SPEC §5).

export type Status = "online" | "offline";
export type Profile = "admin" | "standard" | "restricted";
export type UserState = "active" | "inactive" | "deleted";
export type MembershipRole = "member" | "supervisor" | "both";
/** `"directory"`, `"attendants"` or `"team:<id>"`. */
export type RosterName = "directory" | "attendants" | `team:${string}`;

export interface Membership {
  id: string;
  as: MembershipRole;
}

/** A user as a roster shows them; optional fields only where the watcher may see them. */
export interface Entry {
  id: string;
  nickname: string;
  name?: string;
  status: Status;
  /** When the current status began (ms since the epoch); 0 if never seen. */
  since: number;
  /** Last proven interaction (ms since the epoch); 0 if never seen. */
  last_seen: number;
  /** Per-user transition counter. */
  v: number;
  available: boolean;
  away_message: string;
  profile?: Profile;
  teams?: Membership[];
  state?: UserState;
}

/** `online + offline = active`; only on the `directory` roster. */
export interface Stats {
  online: number;
  offline: number;
  active: number;
  inactive: number;
}

/** The connected user, from `welcome`. */
export interface WelcomeUser {
  id: string;
  tenant: string;
  name: string;
  nickname: string;
  profile: Profile;
  /** True when the user may watch `attendants`. */
  attendant: boolean;
  teams: Membership[];
}

/** Why a roster holds no data: refused (`forbidden`, `not_found`) or ended (`revoked`). */
export interface RosterError {
  code: string;
  message: string;
}

/** A watched roster as handed to the page. Treat it as read-only. */
export interface Roster {
  name: RosterName;
  users: Entry[];
  stats: Stats | null;
  error: RosterError | null;
}

/** The hub frame that caused a change (a snapshot, a delta or an error). */
export type Frame = { type: string; [key: string]: unknown };

/** Why the provider is asked for a token. */
export type TokenReason = "hello" | "refresh" | "rejected";

export interface PresenceOptions {
  /**
   * Returns a JWT for this user. Called before every connection and again
   * before the token's `exp`; "rejected" means the hub refused the last one (4001).
   */
  token: (reason: TokenReason) => Promise<string> | string;
  /** `ws(s)://host/v1/ws`. Default is the page's own host. Required outside a browser. */
  url?: string;
  /** A WebSocket constructor (e.g. `ws` in Node 20). Default is `globalThis.WebSocket`. */
  WebSocket?: new (url: string) => WebSocket;
  /** Where the tab id lives. Default is `sessionStorage`, else memory. */
  storage?: { getItem(key: string): string | null; setItem(key: string, value: string): void };
  /**
   * Where interaction events are listened to. Default is `window` in a
   * browser, nothing elsewhere (call `interacted()` yourself); `null` disables it.
   */
  target?: EventTarget | null;
  /** Sent in `hello` as `client`. Default is `presence.js/${VERSION}`. */
  client?: string;
  /** First reconnect delay before jitter. Default is 500 ms. */
  backoffMs?: number;
  /** Longest reconnect delay. Default is 30000 ms. */
  maxBackoffMs?: number;
}

export type ConnectionState = "idle" | "connecting" | "open" | "closed" | "ended";

export interface Events {
  welcome: WelcomeUser;
  state: ConnectionState;
  /** The connection closed; it reconnects after `retryInMs`. */
  close: { code: number; reason: string; retryInMs: number };
  /**
   * Closed for good: 4003 (deactivated, deleted, forbidden), 4004 (logged
   * out), 4008 (policy violation: too many frames, a frame too large) or
   * 4029 (too many tabs for this user).
   */
  end: { code: number; reason: string };
  /** An error frame that belongs to no roster, or a failed token refresh. */
  error: { code: string; message: string };
}

export declare class PresenceClient {
  constructor(opts: PresenceOptions);
  /** The tab id, kept in `sessionStorage`: a reload is the same tab. */
  readonly tab: string;
  readonly state: ConnectionState;
  /** The user from the last `welcome`, or null before it. */
  readonly user: WelcomeUser | null;
  /** Opens the connection. */
  start(): this;
  on<E extends keyof Events>(event: E, fn: (arg: Events[E]) => void): () => void;
  /** Watches a roster; re-subscribed after every reconnect. Returns a function that stops watching. */
  watch(name: RosterName, onChange: (roster: Roster, cause: Frame) => void): () => void;
  /** The current state of a watched roster. */
  roster(name: RosterName): Roster | undefined;
  /** Records a real interaction (done automatically for DOM input events). */
  interacted(): void;
  /** Milliseconds since the last real interaction in this tab. */
  idleMs(): number;
  /** Logs the user out of every tab (4004). */
  logout(): void;
  /** Closes this tab's connection for good. */
  close(): void;
}

/** The SDK's version, which is the hub's protocol version (`presence-protocol`). */
export declare const VERSION: string;

/** Creates a client and connects it. */
export declare function connect(opts: PresenceOptions): PresenceClient;

/** The claims of a JWT, unverified (`{}` if it does not parse). */
export declare function jwtClaims(token: string): { exp?: number; iat?: number; sub?: string; tid?: string };
