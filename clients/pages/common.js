// What every dashboard page shares: the token from the URL fragment, the
// SDK client, English / Brazilian Portuguese text, the connection banner,
// and small formatting helpers.

import { connect } from "/sdk/presence.js";

export const lang = /^pt\b/i.test(navigator.language || "") ? "pt-BR" : "en";

const STRINGS = {
  en: {
    connecting: "Connecting…",
    open: "Live",
    reconnecting: "Connection lost ({code}); reconnecting in {s} s…",
    noToken: "No token: open this page with #token=<JWT> (presence-server --dev prints links).",
    ended4003: "Disconnected: your access was deactivated or revoked.",
    ended4004: "Disconnected: you logged out.",
    endedOther: "Disconnected.",
    reason: "Reason from the hub: {code} {reason}",
    online: "Online",
    offline: "Offline",
    active: "Active",
    inactive: "Inactive",
    all: "All",
    never: "never",
    now: "now",
    available: "Available",
    unavailable: "Unavailable",
    admin: "Administrator",
    standard: "Standard",
    restricted: "Restricted",
    member: "member",
    supervisor: "supervisor",
    both: "member and supervisor",
    signedInAs: "Signed in as {name}",
    // user management
    usersTitle: "User management",
    search: "Search by name or id",
    activity: "Activity",
    colName: "Name",
    colLastSeen: "Last seen",
    colAvailability: "Availability",
    colAway: "Away message",
    colTeams: "Teams",
    colRole: "Role",
    deactivate: "Deactivate selected",
    reactivate: "Reactivate selected",
    confirmDeactivate: "Deactivate {n} user(s)? Their tabs are closed at once.",
    inactiveTitle: "Inactive users",
    noUsers: "No user matches.",
    notAdmin: "This screen is for administrators.",
    done: "{action}: {n} user(s) changed.",
    failed: "{action} failed: {message}",
    feed: "Recent changes",
    wentOnline: "{name} is online",
    wentOffline: "{name} is offline",
    selectAll: "Select all",
    // attendants
    menuHome: "Home",
    menuCustomers: "Customers",
    menuTickets: "Tickets",
    menuReports: "Reports",
    attendants: "Attendants",
    attendantsOnline: "Attendants online now",
    nobodyOnline: "No other attendant is online.",
    attendantsHint:
      "The attendants button in the top menu is shown only to CRM attendants; it lists the attendants online now.",
    you: "you",
    // team
    teamTitle: "Team {team}",
    pickTeam: "Team",
    noTeam: "You belong to no team; open this page with ?team=<id>.",
    onlineOf: "{online} of {total} online",
    teamForbidden: "You may not see this team.",
    teamNotFound: "No such team.",
    // attendance report
    reportsTitle: "Attendance report",
    from: "From",
    to: "To",
    today: "Today",
    yesterday: "Yesterday",
    last7: "Last 7 days",
    thisMonth: "This month",
    allTeams: "All teams",
    downloadCsv: "Download CSV",
    loading: "Loading…",
    timesIn: "Times in {zone} · updated {at}",
    colAttendant: "Attendant / day",
    colTimeline: "Timeline",
    colOnline: "Time online",
    colPeriods: "Periods",
    colFirst: "First online",
    colLast: "Last offline",
    colGap: "Longest gap",
    colMembers: "Members",
    colTeam: "Team",
    teamTotals: "Team totals",
    daysPresent: "present {n} of {of} day(s)",
    daysPresentOnly: "present {n} day(s)",
    stillOnline: "still online",
    period: "{from} – {to}",
    noAttendants: "No attendant in this report.",
    reportForbidden: "This report is for administrators and team supervisors.",
    badRange: "Check the dates: {message}",
    reportNotFound: "Not found: {message}",
    reportFailed: "The report could not be loaded: {message}",
    csvFailed: "The CSV could not be downloaded: {message}",
  },
  "pt-BR": {
    connecting: "Conectando…",
    open: "Ao vivo",
    reconnecting: "Conexão perdida ({code}); reconectando em {s} s…",
    noToken: "Sem token: abra esta página com #token=<JWT> (o presence-server --dev imprime os links).",
    ended4003: "Desconectado: seu acesso foi desativado ou revogado.",
    ended4004: "Desconectado: você saiu.",
    endedOther: "Desconectado.",
    reason: "Motivo informado pelo hub: {code} {reason}",
    online: "Online",
    offline: "Offline",
    active: "Ativos",
    inactive: "Inativos",
    all: "Todos",
    never: "nunca",
    now: "agora",
    available: "Disponível",
    unavailable: "Indisponível",
    admin: "Administrador",
    standard: "Padrão",
    restricted: "Restrito",
    member: "membro",
    supervisor: "supervisor",
    both: "membro e supervisor",
    signedInAs: "Conectado como {name}",
    usersTitle: "Gestão de usuários",
    search: "Buscar por nome ou id",
    activity: "Atividade",
    colName: "Nome",
    colLastSeen: "Visto por último",
    colAvailability: "Disponibilidade",
    colAway: "Mensagem de ausência",
    colTeams: "Equipes",
    colRole: "Perfil",
    deactivate: "Desativar selecionados",
    reactivate: "Reativar selecionados",
    confirmDeactivate: "Desativar {n} usuário(s)? As abas deles são fechadas na hora.",
    inactiveTitle: "Usuários inativos",
    noUsers: "Nenhum usuário encontrado.",
    notAdmin: "Esta tela é para administradores.",
    done: "{action}: {n} usuário(s) alterado(s).",
    failed: "{action} falhou: {message}",
    feed: "Mudanças recentes",
    wentOnline: "{name} ficou online",
    wentOffline: "{name} ficou offline",
    selectAll: "Selecionar todos",
    menuHome: "Início",
    menuCustomers: "Clientes",
    menuTickets: "Chamados",
    menuReports: "Relatórios",
    attendants: "Atendentes",
    attendantsOnline: "Atendentes online agora",
    nobodyOnline: "Nenhum outro atendente está online.",
    attendantsHint:
      "O botão de atendentes no menu superior aparece só para atendentes de CRM; ele lista os atendentes online agora.",
    you: "você",
    teamTitle: "Equipe {team}",
    pickTeam: "Equipe",
    noTeam: "Você não pertence a nenhuma equipe; abra esta página com ?team=<id>.",
    onlineOf: "{online} de {total} online",
    teamForbidden: "Você não pode ver esta equipe.",
    teamNotFound: "Equipe inexistente.",
    reportsTitle: "Relatório de presença",
    from: "De",
    to: "Até",
    today: "Hoje",
    yesterday: "Ontem",
    last7: "Últimos 7 dias",
    thisMonth: "Este mês",
    allTeams: "Todas as equipes",
    downloadCsv: "Baixar CSV",
    loading: "Carregando…",
    timesIn: "Horários em {zone} · atualizado às {at}",
    colAttendant: "Atendente / dia",
    colTimeline: "Linha do tempo",
    colOnline: "Tempo online",
    colPeriods: "Períodos",
    colFirst: "Primeira entrada",
    colLast: "Última saída",
    colGap: "Maior intervalo",
    colMembers: "Membros",
    colTeam: "Equipe",
    teamTotals: "Totais por equipe",
    daysPresent: "presente em {n} de {of} dia(s)",
    daysPresentOnly: "presente em {n} dia(s)",
    stillOnline: "ainda online",
    period: "{from} – {to}",
    noAttendants: "Nenhum atendente neste relatório.",
    reportForbidden: "Este relatório é para administradores e supervisores de equipe.",
    badRange: "Confira as datas: {message}",
    reportNotFound: "Não encontrado: {message}",
    reportFailed: "Não foi possível carregar o relatório: {message}",
    csvFailed: "Não foi possível baixar o CSV: {message}",
  },
};

/** The text of `key` in the page's language, with `{var}`s filled in. */
export function t(key, vars = {}) {
  const s = STRINGS[lang][key] ?? STRINGS.en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => vars[k] ?? "");
}

/** Fills every `[data-i18n]` element (and `[data-i18n-placeholder]`). */
export function translate(root = document) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
}

export const $ = (sel) => document.querySelector(sel);

/** Creates an element with attributes/properties and children. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k.startsWith("data-") || k.startsWith("aria-")) el.setAttribute(k, v);
    else el[k] = v;
  }
  el.append(...children.filter((c) => c != null));
  return el;
}

/** A status LED: green when online, grey when offline. */
export function led(status) {
  return h("span", { className: `led ${status}`, role: "img", "aria-label": t(status), title: t(status) });
}

const rtf = new Intl.RelativeTimeFormat(lang, { numeric: "auto" });

/** "2 minutes ago", "now", "never". */
export function ago(ms, online) {
  if (online) return t("now");
  if (!ms) return t("never");
  const s = Math.round((ms - Date.now()) / 1000);
  for (const [unit, secs] of [["day", 86400], ["hour", 3600], ["minute", 60]]) {
    if (-s >= secs) return rtf.format(Math.round(s / secs), unit);
  }
  return rtf.format(Math.min(s, 0), "second");
}

/**
 * "7 h 05 min", "25 min", "3 min 20 s", "42 s": a duration for people (the
 * same in both languages), seconds only while they matter.
 */
export function duration(ms) {
  const s = Math.round(ms / 1000);
  const [h, m, sec] = [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60];
  const two = (n) => String(n).padStart(2, "0");
  if (h) return `${h} h ${two(m)} min`;
  if (m >= 10) return `${m} min`;
  if (m) return `${m} min ${two(sec)} s`;
  return `${sec} s`;
}

/**
 * The claims of a JWT, read without checking it: the page only needs the
 * tenant (`tid`) to build API paths; the hub checks the token on every call.
 */
export function claims(token) {
  try {
    const b64 = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))));
  } catch {
    return {};
  }
}

/** The display name of an entry. */
export const nameOf = (u) => u.nickname || u.name || u.id;

/**
 * Connects the page with the token of its URL fragment and wires the
 * connection banner (`#conn`) and the end notice (`#ended`). The token is
 * never sent anywhere but the hub's `hello` and the admin API.
 */
export function start() {
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  const conn = $("#conn");
  if (!token) {
    conn.textContent = t("noToken");
    conn.dataset.state = "ended";
    return null;
  }
  const client = connect({ token: async () => token, client: "presence-pages/0.1" });
  client.token = token;
  const show = (state, text) => {
    conn.dataset.state = state;
    conn.textContent = text;
  };
  client.on("state", (s) => s === "connecting" && show(s, t("connecting")));
  client.on("welcome", (u) => show("open", `${t("open")} · ${t("signedInAs", { name: u.nickname || u.name })}`));
  client.on("close", (e) => show("closed", t("reconnecting", { code: e.code, s: Math.ceil(e.retryInMs / 1000) })));
  client.on("end", (e) => {
    const key = e.code === 4003 ? "ended4003" : e.code === 4004 ? "ended4004" : "endedOther";
    show("ended", t(key));
    const notice = $("#ended");
    notice.hidden = false;
    notice.dataset.code = e.code;
    notice.replaceChildren(h("strong", {}, t(key)), " ", h("span", {}, t("reason", e)));
  });
  return client;
}
