// The director's recording panel: Record / Stop over POST / DELETE /sessions/{id}/recording with the
// page's token (the controller token, or none with --auth none), the state and length of the recording
// from GET /sessions/{id}/recording, the session's latest files, and a link to the whole list.
//
// The panel shows only on a server that records (the session's `urls` name `recordings`). Refusals
// (507 no room, 409 already recording, ...) are notices; a recording the server ended by itself (quota,
// full disk) is reported with its reason.

import { api, ServerError, sessionPath } from "./api.js";
import { $, h } from "./dom.js";

const POLL_MS = { recording: 2000, idle: 10000 };
const TICK_MS = 250;
const LISTED = 3; // the latest files shown in the panel

/** `83.4` seconds -> "1:23". */
export function clock(seconds) {
  const whole = Math.max(0, Math.floor(seconds));
  const minutes = Math.floor(whole / 60);
  const hours = Math.floor(minutes / 60);
  const mm = hours ? String(minutes % 60).padStart(2, "0") : String(minutes);
  return `${hours ? `${hours}:` : ""}${mm}:${String(whole % 60).padStart(2, "0")}`;
}

function megabytes(bytes) {
  return `${((bytes ?? 0) / 1e6).toFixed(1)} MB`;
}

export class RecordingPanel {
  /**
   * @param {HTMLElement} panel  the section holding #record, #recording-state, #recordings-link, #recordings-list
   * @param {import("./connection.js").StreamConnection} connection  its `session` and `token`
   * @param {import("./notices.js").Notices} notices
   */
  constructor(panel, connection, notices) {
    this.panel = panel;
    this.connection = connection;
    this.notices = notices;
    this.button = $("#record", panel);
    this.status = $("#recording-state", panel);
    this.listLink = $("#recordings-link", panel);
    this.list = $("#recordings-list", panel);
    this.session = null;
    this.current = null; // the recording in progress: its info, and when it was read
    this.lastName = null; // the last finished recording already reported
    this.busy = false;
    this.timer = null;
    this.button.addEventListener("click", () => this.toggle());
    connection.addEventListener("session", ({ detail }) => this.bind(detail.session));
    setInterval(() => this.render(), TICK_MS);
  }

  get token() {
    return this.connection.token;
  }

  /** A session answered: show the panel if its server records, and read its state. */
  async bind(session) {
    let urls = {};
    try {
      ({ urls } = await api(sessionPath(session), { token: this.token }));
    } catch {
      return; // offline: the next answer binds again
    }
    this.session = session;
    this.panel.hidden = !urls.recordings;
    if (this.panel.hidden) return;
    this.listLink.href = urls.recordings;
    await this.refresh(true);
  }

  /** Read the recording's state (and the files); poll again, faster while recording. */
  async refresh(listFiles = false) {
    clearTimeout(this.timer);
    const session = this.session;
    try {
      const state = await api(sessionPath(session, "/recording"), { token: this.token });
      if (session !== this.session) return;
      const was = this.current;
      this.current = state.recording ? { info: state.recording, at: performance.now() } : null;
      this.reportEnd(was, state.last_recording);
      if (listFiles || Boolean(was) !== Boolean(this.current)) await this.listFiles();
    } catch (error) {
      if (!(error instanceof ServerError)) return this.poll(); // offline a moment
    }
    this.render();
    this.poll();
  }

  poll() {
    this.timer = setTimeout(() => this.refresh(), this.current ? POLL_MS.recording : POLL_MS.idle);
  }

  /** A recording that ended without our Stop (quota, full disk, the session ending): say why. */
  reportEnd(was, last) {
    if (!was || this.current || !last || last.name !== was.info.name || this.lastName === last.name) return;
    this.lastName = last.name;
    if (last.reason && last.reason !== "stopped") {
      this.notices.error(`The recording stopped by itself (${last.reason}): ${last.message ?? ""}`.trim());
    }
  }

  async toggle() {
    if (this.busy || !this.session) return;
    this.busy = true;
    this.render();
    const path = sessionPath(this.session, "/recording");
    try {
      if (this.current) {
        const done = await api(path, { method: "DELETE", token: this.token });
        this.lastName = done.name;
        this.current = null;
        this.notices.info(`Recorded ${done.name}: ${clock(done.seconds)}, ${done.frames} frames.`);
      } else {
        const started = await api(path, { method: "POST", token: this.token });
        this.current = { info: started, at: performance.now() };
      }
    } catch (error) {
      const status = error instanceof ServerError ? ` (${error.status})` : "";
      this.notices.error(`Recording${status}: ${error.message}`);
    } finally {
      this.busy = false;
    }
    await this.listFiles();
    await this.refresh();
  }

  /** The session's latest recordings and clips, newest first, each a download link. */
  async listFiles() {
    let listing;
    try {
      listing = await api(sessionPath(this.session, "/recordings"), { token: this.token });
    } catch {
      return;
    }
    const query = this.token ? `?token=${encodeURIComponent(this.token)}` : "";
    const latest = listing.recordings.slice(-LISTED).reverse();
    this.list.replaceChildren(
      ...latest.map((entry) =>
        h("li", { class: "recording-entry", dataset: { name: entry.name, status: entry.status ?? "" } },
          h("a", { href: `${entry.url}${query}`, download: entry.name }, entry.name),
          h("span", { class: "hint" }, entry.status === "recording" ? " recording…"
            : ` ${entry.status ?? ""} · ${clock(entry.seconds ?? 0)} · ${megabytes(entry.bytes)}`)),
      ),
    );
  }

  render() {
    const recording = Boolean(this.current);
    this.button.textContent = recording ? "Stop recording" : "Record";
    this.button.classList.toggle("danger", recording);
    this.button.classList.toggle("primary", !recording);
    this.button.setAttribute("aria-pressed", String(recording));
    this.button.disabled = this.busy || !this.session;
    this.panel.dataset.recording = String(recording);
    if (!recording) {
      this.status.textContent = "Not recording";
      return;
    }
    const { info, at } = this.current;
    const elapsed = (info.seconds ?? 0) + (performance.now() - at) / 1000; // the file's length, ticking on
    this.status.textContent = `● REC ${clock(elapsed)} · ${info.frames ?? 0} frames · ${megabytes(info.bytes)}`;
  }
}
