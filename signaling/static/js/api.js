// HTTP to the signaling server: bearer tokens on every request, JSON errors as ServerError.

/** The server refused a request; `status` is the HTTP status, `retryAfter` seconds if it said so. */
export class ServerError extends Error {
  constructor(status, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/** Statuses a page shows as the server's reason (never as "Reconnecting"). */
export const BUSY_STATUSES = Object.freeze([429, 503]); // retried after Retry-After
export const DENIED_STATUSES = Object.freeze([401, 403]); // not retried: the link itself is wrong

/** Request headers carrying `token` (none when null: a server running with --auth none). */
function bearer(token, headers = {}) {
  return token ? { ...headers, Authorization: `Bearer ${token}` } : { ...headers };
}

/** The ServerError for a failed response: the server's JSON message, or the status line. */
async function serverError(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    message = (await response.json()).error?.message ?? message;
  } catch {
    // not JSON: keep the status line
  }
  const retryAfter = Number.parseFloat(response.headers.get("Retry-After"));
  return new ServerError(response.status, message, Number.isFinite(retryAfter) ? retryAfter : null);
}

/** `fetch` with the token; resolves with the decoded JSON body (null for 204), throws ServerError. */
export async function api(path, { token = null, method = "GET", body = undefined, keepalive = false } = {}) {
  const headers = bearer(token, body === undefined ? {} : { "Content-Type": "application/json" });
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    keepalive,
  });
  if (!response.ok) throw await serverError(response);
  return response.status === 204 ? null : response.json();
}

/** The path of a session resource: `/sessions/{id}` plus `rest`. */
export function sessionPath(session, rest = "") {
  return `/sessions/${encodeURIComponent(session)}${rest}`;
}
