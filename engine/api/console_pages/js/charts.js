// Small SVG charts drawn here (no library): bars over time, a histogram, a ring gauge.
// Each returns an <svg> sized by its viewBox, so it scales with its card.

import { s } from "./dom.js";

const H = 240;
const PAD = { left: 40, right: 12, top: 12, bottom: 28 };
const TICKS = 4;

// The top of the axis: TICKS whole steps of 1, 2 or 5 times a power of ten (counts).
function niceMax(value) {
  const raw = Math.max(1, value / TICKS);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((one) => one >= raw);
  return step * TICKS;
}

function yAxis(max, innerH, width) {
  const out = [];
  for (let i = 0; i <= TICKS; i += 1) {
    const y = PAD.top + innerH - (innerH * i) / TICKS;
    out.push(s("line", { class: "grid-line", x1: PAD.left, x2: width - PAD.right, y1: y, y2: y }));
    out.push(s("text", { x: PAD.left - 6, y: y + 4, "text-anchor": "end" }, (max / TICKS) * i));
  }
  return out;
}

// series: [{values: [...], color, label}] drawn as overlapping bars (the first behind).
export function barChart(labels, series, { everyNthLabel = 10, title = "", width = 720 } = {}) {
  const W = width;
  const innerW = W - PAD.left - PAD.right;
  const innerH = H - PAD.top - PAD.bottom;
  const max = niceMax(Math.max(1, ...series.flatMap((one) => one.values)));
  const slot = innerW / Math.max(1, labels.length);
  const bar = Math.max(1, slot * 0.72);
  const parts = [s("title", {}, title), ...yAxis(max, innerH, W)];
  series.forEach((one, index) => {
    const width = bar * (index === 0 ? 1 : 0.55);
    one.values.forEach((value, i) => {
      if (!value) return;
      const height = (innerH * value) / max;
      parts.push(s("rect", {
        x: PAD.left + i * slot + (slot - width) / 2, y: PAD.top + innerH - height, width, height,
        fill: one.color, rx: Math.min(2, width / 3), "data-series": one.label, "data-value": value,
      }, s("title", {}, `${labels[i]}: ${value} ${one.label}`)));
    });
  });
  labels.forEach((label, i) => {
    const last = i === labels.length - 1;
    if (i % everyNthLabel !== 0 && !(last && i % everyNthLabel > everyNthLabel / 2)) return;
    parts.push(s("text", { x: PAD.left + i * slot + slot / 2, y: H - 8, "text-anchor": "middle" }, label));
  });
  parts.push(s("line", { class: "axis", x1: PAD.left, x2: W - PAD.right, y1: PAD.top + innerH, y2: PAD.top + innerH }));
  return s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title }, parts);
}

// A ring showing `fraction` (0..1, or null for "no data") with the percentage inside.
export function gauge(fraction, { label = "", color = "#16a34a" } = {}) {
  const size = 200;
  const radius = 80;
  const circumference = 2 * Math.PI * radius;
  const shown = fraction === null ? 0 : Math.max(0, Math.min(1, fraction));
  return s("svg", { class: "chart gauge", viewBox: `0 0 ${size} ${size}`, role: "img", "aria-label": label },
    s("circle", { cx: size / 2, cy: size / 2, r: radius, fill: "none", stroke: "#eef2f6", "stroke-width": 18 }),
    s("circle", {
      cx: size / 2, cy: size / 2, r: radius, fill: "none", stroke: color, "stroke-width": 18, "stroke-linecap": "round",
      "stroke-dasharray": `${circumference * shown} ${circumference}`, transform: `rotate(-90 ${size / 2} ${size / 2})`,
    }),
    s("text", { x: size / 2, y: size / 2 + 8, "text-anchor": "middle", class: "gauge-value", "data-value": fraction ?? "" },
      fraction === null ? "–" : `${Math.round(fraction * 100)}%`),
    s("text", { x: size / 2, y: size / 2 + 32, "text-anchor": "middle", class: "gauge-label" }, label));
}
