// Agents: each agent's state now (GET /api/v1/agents): available, ringing, on_call,
// wrap_up, break or offline, as routing reads it (engine/app/agent_states.py): a live call
// says ringing or on a call, an answered call that ended wrap-up, else the agent's log.
// Read again on every call event of the tenant, and every 10 s for the clocks.

import { api } from "./api.js";
import { ago, card, h, replace, shortId, statusBadge, table } from "./dom.js";
import { onEvent } from "./events.js";

const TONE = {
  on_call: "ok", ringing: "warn", available: "info", login: "info", idle: "",
  busy: "warn", break: "warn", wrap_up: "warn", logout: "", offline: "",
};

function agentRow(agent) {
  return h("tr", { dataset: { agent: agent.agent, state: agent.state } },
    h("td", {}, h("b", {}, agent.agent)),
    h("td", { class: "state" }, h("span", { class: `badge ${TONE[agent.state] ?? ""}` }, agent.state.replaceAll("_", " "))),
    h("td", {}, ago(agent.since)),
    h("td", { class: "muted" }, agent.source === "calls" ? "engine's calls" : "reported by ERP"),
    h("td", { class: "num" }, agent.calls),
    h("td", {}, agent.last_session_id
      ? h("a", { href: `#/calls/${agent.last_session_id}` }, shortId(agent.last_session_id), " ", statusBadge(agent.last_status), " ", agent.last_customer ?? "")
      : "–"));
}

export function agentsView(root) {
  const box = h("div", { id: "agents" });
  const error = h("p", { class: "error" });
  async function load() {
    try {
      const board = await api("GET", "agents");
      const counts = {};
      for (const agent of board.items) counts[agent.state] = (counts[agent.state] || 0) + 1;
      replace(box,
        h("div", { class: "kpis" }, ["on_call", "ringing", "wrap_up", "available"].map((state) =>
          h("div", { class: "kpi" }, h("div", { class: "label" }, state.replaceAll("_", " ")), h("div", { class: "value" }, counts[state] || 0)))),
        card("Agents", table(["Agent", "State", "Since", "Source", "Calls 24 h#", "Last call"], board.items.map(agentRow),
          "No agent yet: agents appear once they report activity or take a call.")));
      error.textContent = "";
    } catch (failure) {
      error.textContent = failure.message;
    }
  }
  let timerId = null;
  const off = onEvent(() => { clearTimeout(timerId); timerId = setTimeout(load, 300); });
  const every = setInterval(load, 10_000);
  replace(root, error, box);
  load();
  return () => { off(); clearTimeout(timerId); clearInterval(every); };
}
