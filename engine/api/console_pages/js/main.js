// The console's shell: sign-in with a tenant's API token, the views behind #/hash routes,
// the live event stream (one per tab, shared by every view), and the ticking timers.

import { agentsView } from "./agents.js";
import { ApiError, api, token, whenUnauthorized } from "./api.js";
import { startCalls } from "./calls.js";
import { tick } from "./dom.js";
import { onLinkState, startEvents, stopEvents } from "./events.js";
import { callView, historyView } from "./history.js";
import { ivrView } from "./ivr.js";
import { liveView } from "./live.js";
import { placeView } from "./place.js";
import { statsView } from "./stats.js";

const VIEWS = { live: liveView, place: placeView, history: historyView, agents: agentsView, ivr: ivrView, stats: statsView };
const $ = (id) => document.getElementById(id);
let leaveView = null;

function route() {
  if (!token.get()) return;
  if (leaveView) { leaveView(); leaveView = null; }
  const [, name = "live", id] = location.hash.split("/");
  const root = $("view");
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.view === name || (name === "calls" && link.dataset.view === "history"));
  }
  if (name === "calls" && id) leaveView = callView(root, id);
  else leaveView = (VIEWS[name] ?? liveView)(root) || null;
  window.scrollTo(0, 0);
}

function showLogin(message = "") {
  stopEvents();
  token.clear();
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("token").value = "";
  $("token").focus();
}

async function enter() {
  const tenant = await api("GET", "tenant"); // 401 here: the token is not one
  $("tenant").textContent = tenant.name === tenant.slug ? tenant.slug : `${tenant.name} (${tenant.slug})`;
  $("login").hidden = true;
  $("app").hidden = false;
  startEvents(() => showLogin("Your token is no longer valid; sign in again."));
  await startCalls();
  route();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  token.set($("token").value.trim());
  try {
    await enter();
  } catch (error) {
    showLogin(error instanceof ApiError && error.status === 401 ? "This token is not valid (revoked, or mistyped)." : `Cannot reach the engine: ${error.message}`);
  }
});
$("logout").addEventListener("click", () => showLogin());
whenUnauthorized(() => showLogin("Your token is no longer valid; sign in again."));
onLinkState((state) => {
  const badge = $("stream-state");
  badge.dataset.state = state;
  badge.textContent = state === "live" ? "live" : state;
});
window.addEventListener("hashchange", route);
setInterval(() => { for (const el of document.querySelectorAll("[data-since]")) tick(el); }, 1000);

if (token.get()) enter().catch(() => showLogin()); else showLogin();
