// The calls in flight, kept up to date from the event stream whatever view is open.
//
// Each call's status comes from its events' status_to; its legs (agent, customer, or the
// inbound caller) from the leg events (agent.dialing, customer.answered, ...), holds, mutes,
// the recording and a transfer from theirs. A call first seen through an event is read once
// (GET sessions/{id}) for its numbers. Calls that end move to `ended` (the newest 25).

import { api } from "./api.js";
import { LIVE_STATUSES, isTerminal } from "./dom.js";
import { onEvent } from "./events.js";

export const live = new Map();
export const ended = [];
const MAX_ENDED = 25;
const watchers = new Set();
let subscribed = false;

export function onCallsChanged(watcher) { watchers.add(watcher); return () => watchers.delete(watcher); }

function notify(id) {
  for (const watcher of watchers) watcher(id);
}

// The legs a status implies, before (or without) their own events. Inbound: the caller is
// the customer leg; an agent leg exists only once the IVR transfers the caller.
function legsFor(call) {
  const legs = { agent: "idle", customer: "idle" };
  if (call.direction === "inbound") {
    legs.customer = call.status === "connected" ? "up" : "ringing";
    return legs;
  }
  switch (call.status) {
    case "dialing_agent": legs.agent = "ringing"; break;
    case "agent_answered": legs.agent = "up"; break;
    case "dialing_customer": legs.agent = "up"; legs.customer = "ringing"; break;
    case "connected": legs.agent = "up"; legs.customer = "up"; break;
    default: break;
  }
  return legs;
}

function fromSession(session) {
  const call = {
    id: session.id,
    status: session.status,
    direction: session.direction,
    agent: session.agent_id || session.agent_number,
    customer: session.direction === "inbound" ? session.caller_number : session.customer_number,
    createdAt: session.created_at,
    statusAt: session.updated_at,
    connectedAt: session.connected_at,
    endedAt: session.ended_at,
    endReason: session.end_reason,
    talkMs: session.talk_ms,
    ivrMenu: session.ivr_menu,
    digits: "",
    held: {},
    muted: {},
    recording: session.recording_path ? "on" : null,
    transfer: null,
    lastEvent: null,
  };
  call.legs = legsFor(call);
  return call;
}

// Why a call ended, from the event that ended it (the session row says it too, in end_reason,
// but the stream carries events, not rows).
const ENDED_BY = {
  "agent.hangup": "agent hung up", "customer.hangup": "customer hung up",
  "agent.unanswered": "agent did not answer", "customer.unanswered": "customer did not answer",
  "session.ended": "ended through the API", "call.failed": "failed", "ivr.ended": "caller left the IVR",
};

function endReason(event) {
  const why = ENDED_BY[event.event_type] ?? event.event_type;
  const detail = event.payload?.reason ?? event.payload?.hangup_cause_text;
  return detail ? `${why} (${detail})` : why;
}

const LEG_STATES = { dialing: "ringing", answered: "up", unanswered: "gone", hangup: "gone" };

function applyEvent(call, event) {
  const [kind, what] = event.event_type.split(".");
  call.lastEvent = event.event_type;
  if (event.status_to) {
    call.status = event.status_to;
    call.statusAt = event.occurred_at;
    if (event.status_to === "connected" && !call.connectedAt) call.connectedAt = event.occurred_at;
    const implied = legsFor(call);
    for (const leg of ["agent", "customer"]) {
      if (call.legs[leg] === "idle" || (call.legs[leg] === "ringing" && implied[leg] === "up")) call.legs[leg] = implied[leg];
    }
  }
  if ((kind === "agent" || kind === "customer") && LEG_STATES[what]) call.legs[kind] = LEG_STATES[what];
  const leg = event.payload?.leg;
  if (event.event_type === "control.hold") call.held[leg] = true;
  if (event.event_type === "control.unhold") call.held[leg] = false;
  if (event.event_type === "control.mute") call.muted[leg] = true;
  if (event.event_type === "control.unmute") call.muted[leg] = false;
  if (kind === "recording") call.recording = { started: "on", resumed: "on", paused: "paused", finished: null }[what] ?? call.recording;
  if (kind === "transfer") {
    const outcome = ["completed", "canceled", "failed", "busy", "no_answer"].includes(what);
    call.transfer = outcome ? null : (event.payload?.target ? `to ${event.payload.target}` : call.transfer || "in progress");
  }
  if (event.event_type === "ivr.answered") { call.ivrMenu = event.payload?.menu ?? call.ivrMenu; call.legs.customer = "up"; }
  if (event.event_type === "ivr.dtmf") {
    call.ivrMenu = event.payload?.menu ?? call.ivrMenu;
    call.digits = (call.digits + (event.payload?.digit ?? "")).slice(-12);
  }
  if (event.event_type === "ivr.transfer_dialing") call.legs.agent = "ringing";
  if (event.event_type === "ivr.transferred") call.legs.agent = "up";
  if (event.event_type === "ivr.transfer_finished") call.legs.agent = "gone";
  if (event.status_to && isTerminal(event.status_to)) {
    call.endReason = call.endReason || endReason(event);
  }
  if (isTerminal(call.status)) {
    call.endedAt = call.endedAt || event.occurred_at;
    for (const one of ["agent", "customer"]) if (call.legs[one] !== "idle") call.legs[one] = "gone";
  }
}

function finish(call) {
  live.delete(call.id);
  const at = ended.findIndex((one) => one.id === call.id);
  if (at >= 0) ended.splice(at, 1);
  ended.unshift(call);
  ended.length = Math.min(ended.length, MAX_ENDED);
}

const pending = new Map(); // session id -> events that arrived while it was being read

async function readUnknown(event) {
  pending.set(event.session_id, [event]);
  let call;
  try {
    call = fromSession(await api("GET", `click-to-call/sessions/${event.session_id}`));
  } catch {
    call = fromSession({ id: event.session_id, status: event.status_to || "queued", direction: "click_to_call", created_at: event.occurred_at, updated_at: event.occurred_at });
  }
  const events = pending.get(event.session_id) || [];
  pending.delete(event.session_id);
  for (const one of events) applyEvent(call, one);
  if (isTerminal(call.status)) finish(call); else live.set(call.id, call);
  notify(call.id);
}

function onStreamEvent(event) {
  const id = event.session_id;
  if (pending.has(id)) { pending.get(id).push(event); return; }
  let call = live.get(id);
  if (!call) {
    const old = ended.find((one) => one.id === id);
    if (old) { applyEvent(old, event); notify(id); return; }
    readUnknown(event);
    return;
  }
  applyEvent(call, event);
  if (isTerminal(call.status)) finish(call);
  notify(id);
}

// Subscribes to the stream first, then reads the calls in flight: a call the stream already
// brought is not replaced by the (older) listing.
export async function startCalls() {
  live.clear();
  ended.length = 0;
  if (!subscribed) { onEvent(onStreamEvent); subscribed = true; }
  const page = await api("GET", "click-to-call/sessions", { query: { status: LIVE_STATUSES, limit: 200 } });
  for (const session of page.items.reverse()) {
    if (!live.has(session.id) && !pending.has(session.id)) live.set(session.id, fromSession(session));
  }
  notify(null);
}
