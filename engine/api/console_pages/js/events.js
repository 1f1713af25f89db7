// The tenant's call events, live: GET /api/v1/events read with fetch (EventSource cannot
// send the bearer header), parsed as Server-Sent Events. When the stream ends or breaks
// it reconnects with Last-Event-ID, so the engine replays what was missed: no gap, no
// repeat. Listeners get each event's data (StreamEventOut) and the link's state.

import { authHeaders } from "./api.js";

const listeners = new Set();
const stateListeners = new Set();
let lastId = null;
let retryMs = 3000;
let controller = null;
export let linkState = "connecting";

export function onEvent(listener) { listeners.add(listener); return () => listeners.delete(listener); }
export function onLinkState(listener) { stateListeners.add(listener); listener(linkState); }

function setState(state) {
  linkState = state;
  for (const listener of stateListeners) listener(state);
}

function dispatch(message) {
  if (message.id) lastId = message.id;
  if (!message.data) return;
  let event;
  try { event = JSON.parse(message.data); } catch { return; }
  for (const listener of listeners) {
    try { listener(event); } catch (error) { console.error("event listener failed", error); }
  }
}

// One SSE block ("field: value" lines) as {id, event, data, retry}.
function parseBlock(block) {
  const message = { data: "" };
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "data") message.data += (message.data ? "\n" : "") + value;
    else if (field === "id") message.id = value;
    else if (field === "event") message.event = value;
    else if (field === "retry" && /^\d+$/.test(value)) retryMs = Number(value);
  }
  return message;
}

async function readOnce(signal) {
  const headers = authHeaders({ Accept: "text/event-stream" });
  if (lastId) headers["Last-Event-ID"] = lastId;
  const response = await fetch("/api/v1/events", { headers, signal, cache: "no-store" });
  if (!response.ok) {
    const error = new Error(`event stream: HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  setState("live");
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replaceAll("\r\n", "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      dispatch(parseBlock(buffer.slice(0, end)));
      buffer = buffer.slice(end + 2);
    }
  }
}

export function startEvents(onUnauthorized) {
  stopEvents();
  const ours = new AbortController();
  controller = ours;
  (async () => {
    while (!ours.signal.aborted) {
      try {
        await readOnce(ours.signal);
      } catch (error) {
        if (ours.signal.aborted) return;
        if (error.status === 401) { onUnauthorized(); return; }
      }
      if (ours.signal.aborted) return;
      setState("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, retryMs));
    }
  })();
}

export function stopEvents() {
  if (controller) controller.abort();
  controller = null;
  lastId = null;
  setState("connecting");
}
