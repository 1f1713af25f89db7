// Statistics: calls per minute (placed, and answered), the answer rate, and how long calls
// rang, over the last minutes (GET click-to-call/stats/activity), read again every 15 s.

import { api } from "./api.js";
import { barChart, gauge } from "./charts.js";
import { card, duration, h, replace } from "./dom.js";

const WINDOWS = [[30, "30 min"], [60, "1 hour"], [180, "3 hours"], [720, "12 hours"], [1440, "24 hours"]];
let minutes = 60;

function hhmm(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// the swatches' colours are classes in console.css (the page allows no inline style)
function legend(items) {
  return h("div", { class: "legend" }, items.map(([swatch, label]) => h("span", {}, h("i", { class: swatch }), label)));
}

function kpi(label, value, id) {
  return h("div", { class: "kpi", id }, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
}

export function statsView(root) {
  const select = h("select", { id: "stats-window", class: "compact" },
    WINDOWS.map(([value, label]) => h("option", { value, selected: value === minutes }, `Last ${label}`)));
  const box = h("div", { id: "stats" });
  const error = h("p", { class: "error" });
  async function load() {
    try {
      const activity = await api("GET", "click-to-call/stats/activity", { query: { minutes } });
      const totals = await api("GET", "click-to-call/stats", { query: { created_after: activity.since } });
      const labels = activity.minutes.map((one) => hhmm(one.minute));
      const ring = activity.ring_times;
      const ringLabels = ring.map((one, i) => (i + 1 < ring.length ? `${one.from_ms / 1000}–${ring[i + 1].from_ms / 1000} s` : `${one.from_ms / 1000} s+`));
      replace(box,
        h("div", { class: "kpis" },
          kpi("Calls placed", activity.placed, "kpi-placed"),
          kpi("Answered", activity.answered, "kpi-answered"),
          kpi("Answer rate", activity.answer_rate === null ? "–" : `${Math.round(activity.answer_rate * 100)}%`, "kpi-rate"),
          kpi("In flight", totals.live, "kpi-live"),
          kpi("Avg ring", duration(totals.avg_ring_ms), "kpi-ring"),
          kpi("Avg talk", duration(totals.avg_talk_ms), "kpi-talk")),
        card("Calls per minute",
          barChart(labels, [
            { values: activity.minutes.map((one) => one.placed), color: "#93c5fd", label: "placed" },
            { values: activity.minutes.map((one) => one.answered), color: "#16a34a", label: "answered" },
          ], { everyNthLabel: Math.max(1, Math.round(labels.length / 10)), title: "Calls per minute", width: 1100 }),
          legend([["placed", "placed"], ["answered", "answered by the customer"]])),
        h("div", { class: "grid two" },
          card("Answer rate", gauge(activity.answer_rate, { label: "answered" }),
            h("p", { class: "muted center" }, `${activity.answered} of ${activity.decided} decided calls answered (calls still ringing count neither way)`)),
          card("Ring time", barChart(ringLabels, [{ values: ring.map((one) => one.count), color: "#f59e0b", label: "calls" }],
            { everyNthLabel: 1, title: "Ring time distribution", width: 460 }), legend([["rang", "calls by how long they rang"]]))));
      error.textContent = "";
    } catch (failure) {
      error.textContent = failure.message;
    }
  }
  select.addEventListener("change", () => { minutes = Number(select.value); load(); });
  const every = setInterval(load, 15_000);
  replace(root, h("div", { class: "page-head" }, h("h1", {}, "Statistics"), select), error, box);
  load();
  return () => clearInterval(every);
}
