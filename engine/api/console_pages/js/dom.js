// Building the page: elements from data with textContent only (never innerHTML), so no
// value from the API can become markup; and the formats every view shares.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) el.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// statuses as the call model names them, and the colour of their badge
const STATUS_TONE = {
  queued: "", dialing_agent: "warn", agent_answered: "info", dialing_customer: "warn",
  connected: "ok", completed: "ok", busy: "bad", no_answer: "bad", failed: "bad",
  canceled: "", rejected: "bad",
};
export const LIVE_STATUSES = ["queued", "dialing_agent", "agent_answered", "dialing_customer", "connected"];
export const ALL_STATUSES = [...LIVE_STATUSES, "completed", "busy", "no_answer", "failed", "canceled", "rejected"];
export const isTerminal = (status) => !LIVE_STATUSES.includes(status);

export function statusBadge(status) {
  return h("span", { class: `badge ${STATUS_TONE[status] ?? ""}`, dataset: { status } },
    (status || "unknown").replaceAll("_", " "));
}

export function duration(ms) {
  if (ms === null || ms === undefined) return "–";
  const total = Math.max(0, Math.round(ms / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = String(total % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${seconds}` : `${minutes}:${seconds}`;
}

export function since(iso) {
  return iso ? Date.now() - Date.parse(iso) : null;
}

export function clock(iso) {
  if (!iso) return "–";
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function dateTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${clock(iso)}`;
}

export function ago(iso) {
  const ms = since(iso);
  if (ms === null) return "–";
  if (ms < 60_000) return `${Math.max(0, Math.round(ms / 1000))} s ago`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min ago`;
  if (ms < 86_400_000) return `${Math.round(ms / 3_600_000)} h ago`;
  return dateTime(iso);
}

export function shortId(id) {
  return String(id).slice(0, 8);
}

// A ticking duration: main.js updates every [data-since] element once a second.
export function timer(isoStart, isoEnd = null) {
  const el = h("span", { class: "timer", dataset: { since: isoStart || "" } });
  if (isoEnd) el.dataset.until = isoEnd;
  tick(el);
  return el;
}

export function tick(el) {
  const start = el.dataset.since;
  if (!start) { el.textContent = "–"; return; }
  const end = el.dataset.until ? Date.parse(el.dataset.until) : Date.now();
  el.textContent = duration(end - Date.parse(start));
}

export function card(title, ...body) {
  return h("section", { class: "card" },
    title ? h("div", { class: "card-head" }, h("h2", {}, title)) : null, ...body);
}

export function table(headers, rows, emptyText) {
  return h("table", {},
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", { class: t.endsWith("#") ? "num" : "" }, t.replace(/#$/, ""))))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { class: "empty", colspan: headers.length }, emptyText))));
}
