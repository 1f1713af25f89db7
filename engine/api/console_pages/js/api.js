// The control API, as this tab's tenant: the token typed at sign-in, kept in
// sessionStorage (this tab only, gone when it closes) and sent as a bearer header.

const KEY = "ctc.token";

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, body) {
    const error = body?.error ?? {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code;
    this.details = error.details;
  }
}

// Called when the token stops working (revoked, or the tenant was disabled).
let onUnauthorized = () => {};
export function whenUnauthorized(handler) { onUnauthorized = handler; }

export function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${token.get()}`, ...extra };
}

export async function api(method, path, { body, headers, query } = {}) {
  let url = `/api/v1/${path}`;
  if (query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      for (const one of [value].flat()) {
        if (one !== undefined && one !== null && one !== "") params.append(key, one);
      }
    }
    if ([...params].length) url += `?${params}`;
  }
  const response = await fetch(url, {
    method,
    headers: authHeaders(body === undefined ? headers : { "Content-Type": "application/json", ...headers }),
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (response.status === 401) onUnauthorized();
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// A request id no one else will pick; crypto.randomUUID needs a secure context (https or
// localhost), getRandomValues does not.
export function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
