// Small SVG charts drawn here (no library): bars over time, a histogram, a ring gauge.
// Each returns an <svg> sized by its viewBox, so it scales with its card.

import { s } from "./dom.js";

const W = 720;
const H = 240;
const PAD = { left: 40, right: 12, top: 12, bottom: 28 };

function niceMax(value) {
  if (value <= 4) return 4;
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
  return 10 * step;
}

function yAxis(max, innerH) {
  const out = [];
  for (let i = 0; i <= 4; i += 1) {
    const value = (max / 4) * i;
    const y = PAD.top + innerH - (innerH * i) / 4;
    out.push(s("line", { class: "grid-line", x1: PAD.left, x2: W - PAD.right, y1: y, y2: y }));
    out.push(s("text", { x: PAD.left - 6, y: y + 4, "text-anchor": "end" }, Number.isInteger(value) ? value : value.toFixed(1)));
  }
  return out;
}

// series: [{values: [...], color, label}] drawn as overlapping bars (the first behind).
export function barChart(labels, series, { everyNthLabel = 10, title = "" } = {}) {
  const innerW = W - PAD.left - PAD.right;
  const innerH = H - PAD.top - PAD.bottom;
  const max = niceMax(Math.max(1, ...series.flatMap((one) => one.values)));
  const slot = innerW / Math.max(1, labels.length);
  const bar = Math.max(1, slot * 0.72);
  const parts = [s("title", {}, title), ...yAxis(max, innerH)];
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
    if (i % everyNthLabel !== 0 && i !== labels.length - 1) return;
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
  return s("svg", { class: "chart gauge", viewBox: `0 0 ${size} ${size}`, role: "img", "aria-label": label, style: "max-width:220px;margin:auto" },
    s("circle", { cx: size / 2, cy: size / 2, r: radius, fill: "none", stroke: "#eef2f6", "stroke-width": 18 }),
    s("circle", {
      cx: size / 2, cy: size / 2, r: radius, fill: "none", stroke: color, "stroke-width": 18, "stroke-linecap": "round",
      "stroke-dasharray": `${circumference * shown} ${circumference}`, transform: `rotate(-90 ${size / 2} ${size / 2})`,
    }),
    s("text", { x: size / 2, y: size / 2 + 10, "text-anchor": "middle", style: "font-size:34px;font-weight:650;fill:#1f2933", "data-value": fraction ?? "" },
      fraction === null ? "–" : `${Math.round(fraction * 100)}%`),
    s("text", { x: size / 2, y: size / 2 + 34, "text-anchor": "middle" }, label));
}
