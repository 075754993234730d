// Page addresses: the session in the path, query flags and tokens, the director's own address, and the
// API key kept for this tab.

const query = new URLSearchParams(location.search);
const API_KEY_ITEM = "longlive-rtc.api-key";
let apiKey = null; // the key taken from the address, should sessionStorage be refused

/** The session id in `/view/{session}` or `/obs/{session}`. */
export function sessionFromPath() {
  const last = location.pathname.split("/").filter(Boolean).pop() ?? "";
  return decodeURIComponent(last);
}

/** A query parameter's text, or `fallback` when absent. */
export function param(name, fallback = null) {
  return query.get(name) ?? fallback;
}

/**
 * What the viewer and OBS pages take from their address (`/view|obs/{session}?token=&codec=&idle=&title=`):
 * the options of their viewer StreamConnection (less the video) and of their idle card (`idle` defaults
 * to `idleMode`).
 */
export function audienceOptions(idleMode) {
  return {
    connection: { session: sessionFromPath(), token: param("token"), role: "viewer", codec: param("codec") },
    idle: { mode: param("idle", idleMode), title: param("title") },
  };
}

/** A boolean query flag: `?stamp=0`, `?prompt=1`; "0", "false", "no" and "off" mean false. */
export function flag(name, fallback) {
  const value = query.get(name);
  if (value === null) return fallback;
  return !["0", "false", "no", "off"].includes(value.trim().toLowerCase());
}

/** Put `?session=` and `?token=` (the controller's) in the address bar, so that a reload rejoins. */
export function rememberSession(session, token) {
  const url = new URL(location.href);
  url.searchParams.set("session", session);
  if (token) url.searchParams.set("token", token);
  else url.searchParams.delete("token");
  if (url.href !== location.href) history.replaceState(null, "", url);
}

/**
 * The API key for creating sessions: one given in the address (`/?token=`, the URL the server prints)
 * is kept in this tab's sessionStorage and taken out of the address bar (history, screen shares).
 */
export function takeApiKey() {
  const url = new URL(location.href);
  const given = url.searchParams.get("token");
  if (given && !url.searchParams.has("session")) {
    try {
      sessionStorage.setItem(API_KEY_ITEM, given);
    } catch {
      // storage refused (private mode): the key lives only as long as this page
    }
    url.searchParams.delete("token");
    history.replaceState(null, "", url);
    apiKey = given;
  }
  try {
    return sessionStorage.getItem(API_KEY_ITEM) ?? apiKey;
  } catch {
    return apiKey;
  }
}
