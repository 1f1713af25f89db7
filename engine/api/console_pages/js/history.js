// Call history with the session list's filters (status, direction, agent, customer,
// reference, period; cursor pages), and one call: its facts, its recording and its event
// timeline (live calls keep growing it from the event stream).

import { ApiError, api, authHeaders } from "./api.js";
import { ALL_STATUSES, card, clock, dateTime, duration, h, isTerminal, replace, shortId, statusBadge, table } from "./dom.js";
import { onEvent } from "./events.js";

let filters = { status: [], direction: "", agent_id: "", customer_number: "", external_ref: "", created_after: "", created_before: "" };

function toIso(local) {
  return local ? new Date(local).toISOString() : "";
}

function sessionRow(session) {
  return h("tr", { class: "clickable", dataset: { sessionId: session.id, status: session.status }, onclick: () => { location.hash = `#/calls/${session.id}`; } },
    h("td", {}, dateTime(session.created_at)),
    h("td", { class: "mono" }, shortId(session.id)),
    h("td", {}, session.direction.replaceAll("_", " ")),
    h("td", {}, session.agent_id || session.agent_number || "–"),
    h("td", {}, session.direction === "inbound" ? session.caller_number || "–" : session.customer_number || "–"),
    h("td", { class: "status" }, statusBadge(session.status)),
    h("td", { class: "num" }, duration(session.ring_ms)),
    h("td", { class: "num" }, duration(session.talk_ms)),
    h("td", {}, session.recording_path ? h("span", { class: "badge info", title: "recorded" }, "♪ rec") : ""),
    h("td", { class: "muted" }, session.external_ref || ""));
}

export function historyView(root) {
  const chips = h("div", { class: "chips", id: "status-chips" }, ALL_STATUSES.map((status) => {
    const chip = h("button", { type: "button", class: `chip ${filters.status.includes(status) ? "on" : ""}`, dataset: { status } }, status.replaceAll("_", " "));
    chip.addEventListener("click", () => { chip.classList.toggle("on"); });
    return chip;
  }));
  const field = (name, label, attrs = {}) => h("div", {}, h("label", { for: `h-${name}` }, label),
    h("input", { id: `h-${name}`, name, value: filters[name], ...attrs }));
  const direction = h("select", { id: "h-direction", name: "direction" },
    ["", "click_to_call", "inbound", "outbound"].map((d) => h("option", { value: d, selected: d === filters.direction }, d ? d.replaceAll("_", " ") : "any")));
  const form = h("form", { id: "history-filters" },
    h("label", {}, "Status"), chips,
    h("div", { class: "filters" },
      h("div", {}, h("label", { for: "h-direction" }, "Direction"), direction),
      field("agent_id", "Agent id"),
      field("customer_number", "Customer (E.164)"),
      field("external_ref", "Reference"),
      field("created_after", "From", { type: "datetime-local" }),
      field("created_before", "Until", { type: "datetime-local" })),
    h("div", { class: "form-actions" }, h("button", { type: "submit", class: "primary" }, "Apply filters"), h("button", { type: "reset" }, "Clear")));
  const list = h("div", { id: "history-list" });
  const more = h("div", { class: "form-actions" });
  const error = h("p", { class: "error", role: "alert" });
  let rows = [];

  async function load(cursor) {
    error.textContent = "";
    try {
      const page = await api("GET", "click-to-call/sessions", {
        query: { ...filters, created_after: toIso(filters.created_after), created_before: toIso(filters.created_before), limit: 50, cursor },
      });
      rows = cursor ? [...rows, ...page.items.map(sessionRow)] : page.items.map(sessionRow);
      replace(list, table(["Placed", "Call", "Direction", "Agent", "Customer", "Status", "Ring#", "Talk#", "", "Reference"], rows, "No call matches these filters."));
      replace(more, page.next_cursor ? h("button", { type: "button", id: "history-more", onclick: () => load(page.next_cursor) }, "Load more") : null);
    } catch (failure) {
      error.textContent = failure instanceof ApiError && failure.details?.length
        ? failure.details.map((d) => `${d.field}: ${d.message}`).join("; ")
        : failure.message;
    }
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    filters = {
      status: [...chips.querySelectorAll(".chip.on")].map((chip) => chip.dataset.status),
      direction: data.get("direction"),
      agent_id: data.get("agent_id").trim(),
      customer_number: data.get("customer_number").trim(),
      external_ref: data.get("external_ref").trim(),
      created_after: data.get("created_after"),
      created_before: data.get("created_before"),
    };
    load();
  });
  form.addEventListener("reset", () => {
    for (const chip of chips.children) chip.classList.remove("on");
    filters = { status: [], direction: "", agent_id: "", customer_number: "", external_ref: "", created_after: "", created_before: "" };
    setTimeout(load);
  });
  replace(root, card("Call history", form, error), card(null, list, more));
  load();
}

// -- one call -----------------------------------------------------------------------------

function fact(label, value) {
  return h("div", { class: "fact" }, h("div", { class: "k" }, label), h("div", {}, value ?? "–"));
}

function payloadText(payload) {
  return Object.entries(payload || {})
    .filter(([, value]) => value !== null && value !== "" && typeof value !== "object")
    .map(([key, value]) => `${key}=${value}`).join("  ·  ");
}

function timelineItem(event, first) {
  const offset = Date.parse(event.occurred_at) - Date.parse(first);
  return h("li", { class: event.status_to ? "status" : "", dataset: { eventType: event.event_type } },
    h("span", { class: "when" }, clock(event.occurred_at), `  +${(offset / 1000).toFixed(1)} s`),
    h("span", { class: "type" }, event.event_type),
    event.status_to ? h("span", {}, "  ", event.status_from ? `${event.status_from.replaceAll("_", " ")} → ` : "", statusBadge(event.status_to)) : null,
    payloadText(event.payload) ? h("div", { class: "payload mono" }, payloadText(event.payload)) : null);
}

// The recording, fetched with the token (an <audio src> cannot send it) and played from
// memory.
async function recordingPlayer(session, box) {
  if (!session.recording_path) { replace(box, h("p", { class: "muted" }, "This call was not recorded.")); return; }
  if (!isTerminal(session.status)) { replace(box, h("p", { class: "muted" }, "Recording… it can be played once the call ends.")); return; }
  replace(box, h("p", { class: "muted" }, "Loading the recording…"));
  const response = await fetch(`/api/v1/click-to-call/sessions/${session.id}/recording`, { headers: authHeaders(), cache: "no-store" });
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    replace(box, h("p", { class: "error" }, `Recording unavailable: ${body?.error?.message || response.status}`));
    return;
  }
  const url = URL.createObjectURL(await response.blob());
  const suffix = response.headers.get("Content-Type") === "audio/wav" ? "wav" : "audio";
  replace(box,
    h("audio", { controls: true, src: url, id: "recording-audio", preload: "metadata" }),
    h("div", { class: "hint" }, `${duration(session.recording_duration_ms)} · `, h("a", { href: url, download: `${session.id}.${suffix}` }, "download")));
}

export function callView(root, sessionId) {
  const box = h("div", {});
  async function load() {
    let session;
    try {
      session = await api("GET", `click-to-call/sessions/${sessionId}`);
    } catch (failure) {
      replace(root, card("Call", h("p", { class: "error" }, failure.message), h("a", { href: "#/history" }, "← back to history")));
      return;
    }
    const player = h("div", { id: "recording" });
    const first = session.events[0]?.occurred_at ?? session.created_at;
    replace(box,
      h("section", { class: "card", id: "call-detail", dataset: { sessionId: session.id, status: session.status } },
        h("div", { class: "card-head" }, h("h2", {}, `Call ${shortId(session.id)}`), statusBadge(session.status)),
        h("div", { class: "facts" },
          fact("Direction", session.direction.replaceAll("_", " ")),
          fact("Agent", session.agent_id ? `${session.agent_id} (${session.agent_number})` : session.agent_number),
          fact(session.direction === "inbound" ? "Caller" : "Customer", session.direction === "inbound" ? session.caller_number : session.customer_number),
          fact("Caller ID", session.caller_id),
          fact("Placed", dateTime(session.created_at)),
          fact("Connected", session.connected_at ? dateTime(session.connected_at) : null),
          fact("Ended", session.ended_at ? dateTime(session.ended_at) : null),
          fact("Ring time", duration(session.ring_ms)),
          fact("Talk time", duration(session.talk_ms)),
          fact("End reason", session.end_reason),
          fact("Hangup cause", session.hangup_cause !== null ? `${session.hangup_cause} ${session.hangup_cause_text ?? ""}` : null),
          fact("Reference", session.external_ref),
          session.ivr_menu ? fact("IVR menu", session.ivr_menu) : null)),
      card("Recording", player),
      card(`Timeline (${session.events.length} events)`,
        h("ol", { class: "timeline", id: "timeline" }, session.events.map((event) => timelineItem(event, first)))));
    recordingPlayer(session, player).catch((failure) => replace(player, h("p", { class: "error" }, failure.message)));
  }
  replace(root, h("p", {}, h("a", { href: "#/history" }, "← Call history")), box);
  // a live call's timeline grows as its events arrive (read again: one source of truth)
  let timerId = null;
  const off = onEvent((event) => {
    if (event.session_id !== sessionId) return;
    clearTimeout(timerId);
    timerId = setTimeout(load, 150);
  });
  load();
  return () => { off(); clearTimeout(timerId); };
}
