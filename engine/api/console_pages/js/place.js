// Place a click-to-call: POST click-to-call/initiate with an Idempotency-Key. The key is
// made when the form is filled and kept until the call is placed or a field changes, so a
// second click or a retry after a lost answer never dials twice.

import { api, newKey } from "./api.js";
import { card, h, replace, shortId, statusBadge } from "./dom.js";

const FIELDS = [
  ["agent_number", "Agent", "Extension, PJSIP endpoint or E.164 number", true],
  ["customer_number", "Customer number", "E.164 (+14155550100), or national with a region", true],
  ["default_region", "Region", "ISO country for national numbers, e.g. US", false],
  ["caller_id", "Caller ID", "E.164 shown to the customer (optional)", false],
  ["agent_id", "Agent id", "The ERP's user id of the agent (optional)", false],
  ["external_ref", "Reference", "Lead, ticket or order (optional)", false],
];

export function placeView(root) {
  let key = newKey();
  const result = h("div", { id: "place-result", role: "status" });
  const inputs = {};
  const errors = {};
  const button = h("button", { type: "submit", class: "primary", id: "place-submit" }, "Place call");
  const form = h("form", { id: "place-form", novalidate: true },
    h("div", { class: "form-grid" }, FIELDS.map(([name, label, hint, required]) => {
      inputs[name] = h("input", { id: `f-${name}`, name, required, autocomplete: "off", oninput: () => { key = newKey(); } });
      errors[name] = h("div", { class: "field-error" });
      return h("div", {}, h("label", { for: `f-${name}` }, label, required ? " *" : ""), inputs[name], h("div", { class: "hint" }, hint), errors[name]);
    })),
    h("div", { class: "form-actions" }, button, h("span", { class: "muted" }, "Rings the agent first, then the customer, then bridges them.")));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const name of Object.keys(inputs)) { inputs[name].classList.remove("invalid"); errors[name].textContent = ""; }
    const body = {};
    for (const [name, input] of Object.entries(inputs)) if (input.value.trim()) body[name] = input.value.trim();
    if (body.default_region) body.default_region = body.default_region.toUpperCase();
    button.disabled = true;
    replace(result, h("div", { class: "notice" }, "Placing…"));
    try {
      const session = await api("POST", "click-to-call/initiate", { body, headers: { "Idempotency-Key": key } });
      key = newKey();
      replace(result, h("div", { class: "notice ok", id: "place-ok", dataset: { sessionId: session.id } },
        "Call placed: ", h("a", { href: `#/calls/${session.id}` }, `session ${shortId(session.id)}`), " ", statusBadge(session.status),
        " — follow it on ", h("a", { href: "#/live" }, "Live calls"), "."));
    } catch (error) {
      for (const detail of Array.isArray(error.details) ? error.details : []) {
        const name = String(detail.field || "").split(".").pop();
        if (inputs[name]) { inputs[name].classList.add("invalid"); errors[name].textContent = detail.message; }
      }
      replace(result, h("div", { class: "notice bad", id: "place-error" }, `Not placed: ${error.message}`));
    } finally {
      button.disabled = false;
    }
  });
  replace(root, card("Place a click-to-call", form, result));
}
