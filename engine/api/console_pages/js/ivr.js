// IVR menus as a tree: each menu's greeting and input, then each key and what it does;
// a submenu opens beneath its key, and a menu already on the path shows as a link back
// (menus may loop).

import { api } from "./api.js";
import { card, h, replace } from "./dom.js";

const SPECIAL = new Set(["timeout", "invalid", "collected", "fallback"]);

function actionText(option) {
  switch (option.action) {
    case "submenu": return ["go to ", h("span", { class: "menu-name" }, option.menu)];
    case "transfer": return [`transfer to ${option.target_type ?? ""} `, h("b", {}, option.target ?? "")];
    case "http_lookup": return [`look up ${option.method ?? "GET"} `, h("code", {}, option.url ?? ""), option.result_variable ? ` → ${option.result_variable}` : ""];
    case "set_variable": return [`set ${option.name} = ${option.value}`];
    case "record_message": return [`record a message${option.max_duration_s ? ` (max ${option.max_duration_s} s)` : ""}`];
    default: return [option.action.replaceAll("_", " ")];
  }
}

function nextMenus(option) {
  const out = [];
  if (option.menu) out.push([null, option.menu]);
  if (option.next) out.push(["then", option.next]);
  for (const [value, menu] of Object.entries(option.routes ?? {})) out.push([`if ${value}`, menu]);
  return out;
}

function menuNode(name, menus, path) {
  const menu = menus.get(name);
  if (!menu) return h("li", {}, h("span", { class: "menu-name" }, name), h("span", { class: "error" }, " (no such menu)"));
  if (path.includes(name)) return h("li", {}, "↩ back to ", h("span", { class: "menu-name" }, name));
  const inner = [...path, name];
  const input = menu.input_mode && menu.input_mode !== "single_digit"
    ? `${menu.input_mode.replaceAll("_", " ")}${menu.input_length ? ` (${menu.input_length})` : ""}${menu.terminator ? `, ends with ${menu.terminator}` : ""}`
    : "one key";
  const options = Object.entries(menu.options ?? {});
  if (menu.fallback) options.push(["fallback", menu.fallback]);
  return h("li", { dataset: { menu: name } },
    h("span", { class: "menu-name" }, name),
    menu.description ? h("span", { class: "muted" }, ` — ${menu.description}`) : null,
    h("div", { class: "muted" }, menu.greeting ? h("span", { class: "say" }, `plays “${menu.greeting}”`) : "", ` · waits for ${input}`,
      menu.timeout_ms ? ` · ${menu.timeout_ms / 1000} s timeout` : "", menu.max_retries !== undefined && menu.max_retries !== null ? ` · ${menu.max_retries} retries` : ""),
    h("ul", {}, options.map(([key, option]) =>
      h("li", { dataset: { key } },
        h("span", { class: `key ${SPECIAL.has(key) ? "special" : ""}` }, key),
        h("span", { class: "action" }, actionText(option)),
        option.prompt ? h("span", { class: "say" }, `  (plays “${option.prompt}”)`) : null,
        nextMenus(option).length ? h("ul", {}, nextMenus(option).map(([label, next]) =>
          label ? h("li", {}, h("span", { class: "muted" }, `${label}: `), h("ul", {}, menuNode(next, menus, inner))) : menuNode(next, menus, inner))) : null))));
}

export function ivrView(root) {
  const box = h("div", { id: "ivr-menus" });
  replace(root, box);
  api("GET", "ivr-menus").then((list) => {
    const menus = new Map(list.items.map((item) => [item.name, item.menu]));
    if (!menus.size) { replace(box, card("IVR menus", h("p", { class: "empty" }, "No IVR menu yet (ctc ivr import, or PUT /api/v1/ivr-menus/{name})."))); return; }
    // roots: menus no other menu leads to (else every menu, when they all loop)
    const targets = new Set();
    for (const menu of menus.values()) {
      for (const option of [...Object.values(menu.options ?? {}), menu.fallback].filter(Boolean)) {
        for (const [, next] of nextMenus(option)) targets.add(next);
      }
    }
    let roots = [...menus.keys()].filter((name) => !targets.has(name));
    if (!roots.length) roots = [...menus.keys()];
    replace(box, roots.map((name) => card(`Menu ${name} (v${list.items.find((item) => item.name === name).version})`,
      h("ul", { class: "tree" }, menuNode(name, menus, [])))));
  }).catch((failure) => replace(box, h("p", { class: "error" }, failure.message)));
}
