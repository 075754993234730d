// Page addresses: the session in the path, query flags, and the links the director shares.

const query = new URLSearchParams(location.search);

/** The session id in `/view/{session}` or `/obs/{session}`. */
export function sessionFromPath() {
  const last = location.pathname.split("/").filter(Boolean).pop() ?? "";
  return decodeURIComponent(last);
}

/** A query parameter's text, or `fallback` when absent. */
export function param(name, fallback = null) {
  return query.get(name) ?? fallback;
}

/** A boolean query flag: `?stamp=0`, `?prompt=1`; "0", "false", "no" and "off" mean false. */
export function flag(name, fallback) {
  const value = query.get(name);
  if (value === null) return fallback;
  return !["0", "false", "no", "off"].includes(value.trim().toLowerCase());
}

/** Links to the same session: a viewer page, the OBS player, and the director page itself. */
export function shareLinks(session) {
  const id = encodeURIComponent(session);
  const { origin } = location;
  return {
    viewer: `${origin}/view/${id}`,
    obs: `${origin}/obs/${id}`,
    director: `${origin}/?session=${id}`,
  };
}

/** Put `?session=` in the address bar so that a reload rejoins the session. */
export function rememberSession(session) {
  const url = new URL(location.href);
  if (url.searchParams.get("session") === session) return;
  url.searchParams.set("session", session);
  history.replaceState(null, "", url);
}
