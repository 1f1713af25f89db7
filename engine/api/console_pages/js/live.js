// Live calls: every call in flight with its status, legs, timers and who is talking,
// updated from the event stream without a reload; then the calls that just ended.

import { api } from "./api.js";
import { ended, live, onCallsChanged } from "./calls.js";
import { card, h, replace, shortId, statusBadge, table, timer } from "./dom.js";

const LEG_TEXT = { idle: "not dialled", ringing: "ringing", up: "on the line", gone: "gone" };

function leg(name, number, state, held, muted) {
  const dot = held ? "held" : state;
  const notes = [held ? "on hold" : LEG_TEXT[state], muted ? "muted" : null].filter(Boolean).join(", ");
  return h("span", { class: "leg", dataset: { leg: name, state } },
    h("span", { class: `dot ${dot}` }), h("span", {}, h("b", {}, number || name), " ", h("span", { class: "muted" }, notes)));
}

// Who is talking to whom, as far as the events say.
function talking(call) {
  const { agent, customer } = call.legs;
  if (call.direction === "inbound") {
    if (agent === "up" && customer === "up") return h("span", { class: "talking" }, "caller ⇄ agent");
    if (customer === "up") return h("span", {}, "caller in IVR", call.ivrMenu ? ` “${call.ivrMenu}”` : "", call.digits ? ` · keys ${call.digits}` : "");
    return h("span", { class: "muted" }, "arriving");
  }
  if (call.transfer) return h("span", { class: "talking" }, `transfer ${call.transfer}`);
  if (agent === "up" && customer === "up") {
    if (call.held.customer) return h("span", {}, "agent talking, customer on hold");
    if (call.held.agent) return h("span", {}, "customer waiting, agent on hold");
    return h("span", { class: "talking" }, "agent ⇄ customer");
  }
  if (agent === "up" && customer === "ringing") return h("span", {}, "agent waiting for customer");
  if (agent === "ringing") return h("span", { class: "muted" }, "ringing agent");
  return h("span", { class: "muted" }, "–");
}

// Hang up every leg (POST …/end). Two clicks: the first asks, the second ends; the row
// then moves to "Just ended" when the engine reports the end on the event stream.
function endButton(call) {
  const button = h("button", { type: "button", class: "end-call" }, "End");
  button.addEventListener("click", async (event) => {
    event.stopPropagation();
    if (!button.classList.contains("confirm")) {
      button.classList.add("confirm");
      button.textContent = "End call?";
      return;
    }
    button.disabled = true;
    try {
      await api("POST", `click-to-call/sessions/${call.id}/end`, { body: { reason: "ended from the console" } });
    } catch (error) {
      button.disabled = false;
      button.title = error.message;
      button.textContent = "Not ended";
    }
  });
  return button;
}

function liveRow(call, changedId) {
  const since = call.status === "connected" ? call.connectedAt : call.statusAt;
  return h("tr", { class: call.id === changedId ? "clickable flash" : "clickable", dataset: { sessionId: call.id, status: call.status }, onclick: () => { location.hash = `#/calls/${call.id}`; } },
    h("td", { class: "mono" }, shortId(call.id)),
    h("td", { class: "status" }, statusBadge(call.status)),
    h("td", {}, call.direction === "inbound"
      ? [leg("customer", call.customer || "caller", call.legs.customer),
        call.legs.agent === "idle" ? null : leg("agent", "agent", call.legs.agent)]
      : [leg("agent", call.agent, call.legs.agent, call.held.agent, call.muted.agent),
        leg("customer", call.customer, call.legs.customer, call.held.customer, call.muted.customer)]),
    h("td", {}, talking(call)),
    h("td", { class: "num" }, timer(since)),
    h("td", { class: "num" }, timer(call.createdAt)),
    h("td", {}, call.recording === "on" ? h("span", { class: "badge bad" }, "● rec") : call.recording === "paused" ? h("span", { class: "badge" }, "rec paused") : ""),
    h("td", { class: "num" }, endButton(call)));
}

function endedRow(call) {
  return h("tr", { class: "clickable ended", dataset: { sessionId: call.id, status: call.status }, onclick: () => { location.hash = `#/calls/${call.id}`; } },
    h("td", { class: "mono" }, shortId(call.id)),
    h("td", { class: "status" }, statusBadge(call.status)),
    h("td", {}, call.direction === "inbound" ? "inbound" : call.agent || "–"),
    h("td", {}, call.customer || "–"),
    h("td", { class: "num" }, call.connectedAt ? timer(call.connectedAt, call.endedAt) : "–"),
    h("td", {}, call.endReason || ""));
}

export function liveView(root) {
  const liveBox = h("div", { id: "live-calls" });
  const endedBox = h("div", { id: "ended-calls" });
  const count = h("span", { class: "muted" });
  const render = (changedId = null) => {
    const calls = [...live.values()].sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt));
    count.textContent = `${calls.length} in flight`;
    replace(liveBox, table(["Call", "Status", "Legs", "Talking", "In status#", "Total#", "", ""], calls.map((call) => liveRow(call, changedId)), "No calls in flight. Calls appear here as they are placed."));
    replace(endedBox, table(["Call", "Outcome", "Agent", "Customer", "Talk#", "Why"], ended.map(endedRow), "No call has ended since this page opened."));
  };
  replace(root,
    h("section", { class: "card" }, h("div", { class: "card-head" }, h("h2", {}, "Calls in flight"), count), liveBox),
    card("Just ended", endedBox));
  render();
  return onCallsChanged(render);
}
