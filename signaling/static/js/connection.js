// One WebRTC connection to a session, kept alive: offer/answer over POST /offer (with the page's token),
// the video into a <video> element, the data-channel protocol, reconnection with exponential backoff,
// and leaving at once when the tab closes.
//
// Events (EventTarget):
//   "state"   detail {state, attempt, delay, reason}   state: see State below
//   "session" detail {session, peer, token, created}    after every answer (created: a gone session was
//                                                       recreated under its id)
//   "message" detail <protocol event>                   every event from the server (state, progress, ...)

import { BUSY_STATUSES, DENIED_STATUSES, ServerError, api, sessionPath } from "./api.js";

export const State = Object.freeze({
  CONNECTING: "connecting",
  CONNECTED: "connected",
  RETRYING: "retrying", // lost, or the server is unreachable: trying again
  BUSY: "busy", // the server is full or rate-limits us (503/429): trying again after Retry-After
  GONE: "gone", // the server no longer has the session (it restarted, or the session expired)
  DENIED: "denied", // the token is missing or not valid for this (401/403): not retried
  CLOSED: "closed",
});

/** The states in which the server refuses the page (full, rate-limited, wrong token): pages show its reason. */
export const REFUSED = Object.freeze([State.BUSY, State.DENIED]);

const GATHER_TIMEOUT_MS = 4000;
const OPEN_TIMEOUT_MS = 15000;
const DISCONNECTED_GRACE_MS = 3000;
const REQUEST_TIMEOUT_MS = 10000;
const PACED_ATTEMPTS = 40;
/** What the server accepts as a session id to (re)create (the hub's SESSION_ID). */
const SESSION_ID = /^[A-Za-z0-9_-]{4,64}$/;

/** A command the server rejected; `data` is the `error` event's data ({code, message, command, ...}). */
export class CommandError extends Error {
  constructor(data) {
    super(data.message);
    this.data = data;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function waitForIceGathering(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => pc.iceGatheringState === "complete" && done();
    const timer = setTimeout(done, timeoutMs); // send what we have: the server does not trickle either
    pc.addEventListener("icegatheringstatechange", check);
  });
}

export class StreamConnection extends EventTarget {
  /**
   * @param {object} options
   * @param {HTMLVideoElement} options.video  where the stream plays
   * @param {string|null} options.session     session to join; null: `createSession()` makes one first
   * @param {string|null} options.token       the session token (or API key); null with --auth none
   * @param {"controller"|"viewer"} options.role
   * @param {string|null} options.codec       "vp8" or "h264"; null lets the server choose
   * @param {{initial: number, max: number}} options.backoff  retry delays in ms
   * @param {(() => Promise<{session: string, token: string|null}>)|null} options.createSession
   * @param {boolean} options.recreate        a controller asks the server to recreate a gone session
   */
  constructor({
    video, session = null, token = null, role = "controller", codec = null, backoff = {},
    createSession = null, recreate = false,
  }) {
    super();
    this.video = video;
    this.session = session;
    this.token = token;
    this.role = role;
    this.codec = codec;
    this.backoff = { initial: 500, max: 8000, ...backoff };
    this.createSession = createSession;
    this.recreate = recreate;
    this.peerId = null;
    this.pc = null;
    this.channel = null;
    this.state = State.CLOSED;
    this._stopped = true;
    this._loops = 0; // the running loop's number: a stopped loop that wakes up later just ends
    this._pending = new Map();
    this._nextId = 1;
    this._wake = null;
    this._drop = null;
    this._iceServers = null;
  }

  /** Connect, and keep reconnecting whenever the connection is lost, until stop(). */
  start() {
    if (!this._stopped) return;
    this._stopped = false;
    this._loop(++this._loops);
  }

  stop() {
    this._stopped = true;
    this._drop?.("stopped");
    this._wake?.();
    this._teardown();
    this._setState(State.CLOSED);
  }

  /**
   * Leave now (the tab is closing): tell the server to drop this peer at once, with a request that
   * outlives the page, and close the connection.
   */
  leave() {
    const { session, peerId, token } = this;
    if (session && peerId && this.pc) {
      api(sessionPath(session, `/peers/${encodeURIComponent(peerId)}`), { method: "DELETE", token, keepalive: true })
        .catch(() => {});
    }
    this.stop();
  }

  /** Leave the current session for `session` (null: a new one from createSession), reconnecting at once. */
  switchSession(session, token = this.token) {
    this.session = session;
    this.token = token;
    this._drop?.("switching session");
    this._wake?.();
    if (this._stopped) this.start();
  }

  /** Send a command; resolves with the `ack` data, rejects with a CommandError (or Error when offline). */
  request(type, data = {}) {
    const channel = this.channel;
    if (!channel || channel.readyState !== "open") {
      return Promise.reject(new Error("not connected to the server"));
    }
    const id = `c${this._nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new Error(`no answer to ${type}`));
      }, REQUEST_TIMEOUT_MS);
      this._pending.set(id, { resolve, reject, timer });
      channel.send(JSON.stringify({ type, data, id }));
    });
  }

  /**
   * request(), paced by the server: a `limit_exceeded` answer with `retry_after` (the per-connection
   * command budget) is retried after that long, so that importing or restoring many prompts gets through.
   */
  async requestPaced(type, data = {}) {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await this.request(type, data);
      } catch (error) {
        const wait = error instanceof CommandError ? error.data.retry_after : undefined;
        if (error.data?.code !== "limit_exceeded" || typeof wait !== "number" || attempt >= PACED_ATTEMPTS) {
          throw error;
        }
        await sleep(Math.ceil(wait * 1000) + 20);
      }
    }
  }

  // --- the loop ----------------------------------------------------------------------------------

  async _loop(loop) {
    let attempt = 0;
    const current = () => !this._stopped && this._loops === loop;
    while (current()) {
      let reason;
      try {
        this._setState(State.CONNECTING, { attempt });
        const dropped = await this._connect();
        attempt = 0;
        reason = await dropped;
      } catch (error) {
        reason = error;
      }
      if (!current()) break;
      this._teardown();
      const status = reason instanceof ServerError ? reason.status : null;
      const message = reason instanceof Error ? reason.message : String(reason);
      if (DENIED_STATUSES.includes(status)) {
        this._stopped = true; // a wrong token does not fix itself: say so and wait for the user
        this._setState(State.DENIED, { status, reason: message });
        break;
      }
      attempt += 1;
      const delay = this._delay(attempt, reason instanceof ServerError ? reason.retryAfter : null);
      const state = status === 404 ? State.GONE : BUSY_STATUSES.includes(status) ? State.BUSY : State.RETRYING;
      this._setState(state, { attempt, delay, status, reason: message });
      await this._sleep(delay);
    }
  }

  _delay(attempt, retryAfter) {
    const { initial, max } = this.backoff;
    const exponential = Math.min(max, initial * 2 ** (attempt - 1));
    const jittered = exponential * (0.8 + 0.4 * Math.random());
    return retryAfter === null ? jittered : Math.max(jittered, retryAfter * 1000);
  }

  _sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this._wake = done;
    }).finally(() => {
      this._wake = null;
    });
  }

  /**
   * A viewer first asks whether the server is up and has its session (so a missing session is told
   * apart from a server that is down, and waited for). A controller needs no such question: its offer
   * asks the server to recreate a gone session under the same id (`create: true`), so that the viewer
   * and OBS links it shared keep working.
   */
  async _probe() {
    try {
      await api(sessionPath(this.session), { token: this.token });
    } catch (error) {
      if (error instanceof ServerError && error.status === 404) {
        throw new ServerError(404, `the server has no session ${this.session}; waiting for it to come back`);
      }
      throw error;
    }
  }

  /**
   * STUN/TURN servers, asked once per page: after a server restart the session is not known yet, so its
   * token would not be accepted there. A controller about to recreate its session goes on without them.
   */
  async _ice() {
    if (this._iceServers === null) {
      try {
        const { iceServers = [] } = await api("/ice-servers", { token: this.token });
        this._iceServers = iceServers;
      } catch (error) {
        if (!(this.recreate && error instanceof ServerError && error.status === 401)) throw error;
        return [];
      }
    }
    return this._iceServers;
  }

  /** One connection attempt; resolves, once the channel is open, to a promise of the drop reason. */
  async _connect() {
    if (!this.session) {
      if (!this.createSession) throw new Error("no session to join");
      const made = await this.createSession();
      this.session = made.session;
      this.token = made.token;
    } else if (!this.recreate) {
      await this._probe();
    } else if (!SESSION_ID.test(this.session)) {
      throw new ServerError(404, `${this.session} cannot be the id of a session: the server cannot recreate it`);
    }
    const iceServers = await this._ice();
    const pc = new RTCPeerConnection({ iceServers });
    this.pc = pc;
    pc.addTransceiver("video", { direction: "recvonly" });
    const channel = pc.createDataChannel("control");
    this.channel = channel;
    channel.onmessage = (event) => this._onMessage(event.data);
    pc.ontrack = (event) => this._play(event.track);

    const dropped = new Promise((resolve) => {
      this._drop = resolve;
    });
    let graceTimer = null;
    pc.onconnectionstatechange = () => {
      const state = pc.connectionState;
      clearTimeout(graceTimer);
      if (state === "failed" || state === "closed") this._drop?.(`connection ${state}`);
      if (state === "disconnected") {
        graceTimer = setTimeout(() => this._drop?.("connection lost"), DISCONNECTED_GRACE_MS);
      }
    };
    channel.onclose = () => this._drop?.("the server closed the connection");

    await pc.setLocalDescription(await pc.createOffer());
    await waitForIceGathering(pc, GATHER_TIMEOUT_MS);
    const answer = await this._postOffer(pc.localDescription.sdp);
    if (this.pc !== pc) throw new Error("connection replaced");
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    this.session = answer.session;
    this.peerId = answer.peer;
    // the server names the tokens of a session only when this offer created it: recreated after a restart
    const created = Object.hasOwn(answer, "tokens");
    const detail = { session: answer.session, peer: answer.peer, token: this.token, created };
    this.dispatchEvent(new CustomEvent("session", { detail }));

    await this._opened(channel, dropped);
    this._setState(State.CONNECTED);
    return dropped;
  }

  async _postOffer(sdp) {
    const body = { sdp, type: "offer", role: this.role, session: this.session };
    if (this.recreate) body.create = true;
    if (this.codec) body.codec = this.codec;
    try {
      return await api("/offer", { method: "POST", token: this.token, body });
    } catch (error) {
      // the session cannot be recreated under its id (taken meanwhile, or not a valid id): it is gone
      const lost = error instanceof ServerError && (error.status === 400 || error.status === 409);
      throw this.recreate && lost ? new ServerError(404, error.message) : error;
    }
  }

  _opened(channel, dropped) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("the connection did not open in time")), OPEN_TIMEOUT_MS);
      dropped.then((reason) => {
        clearTimeout(timer);
        reject(new Error(reason));
      });
      if (channel.readyState === "open") resolve();
      channel.onopen = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  _play(track) {
    this.video.srcObject = new MediaStream([track]);
    // a rejection means a newer stream replaced this one (AbortError) or autoplay was refused: the video
    // then stays paused (the pages play muted, which browsers allow)
    this.video.play().catch(() => {});
  }

  _onMessage(raw) {
    let event;
    try {
      event = JSON.parse(raw);
    } catch {
      return; // the server only sends JSON; ignore anything else
    }
    const pending = event.id === undefined ? null : this._pending.get(event.id);
    if (pending && (event.type === "ack" || event.type === "error")) {
      this._pending.delete(event.id);
      clearTimeout(pending.timer);
      if (event.type === "ack") pending.resolve(event.data);
      else pending.reject(new CommandError(event.data));
    }
    this.dispatchEvent(new CustomEvent("message", { detail: event }));
  }

  _teardown() {
    const { pc, channel } = this;
    this.pc = null;
    this.channel = null;
    this._drop = null;
    for (const { reject, timer } of this._pending.values()) {
      clearTimeout(timer);
      reject(new Error("connection lost"));
    }
    this._pending.clear();
    if (channel) {
      channel.onmessage = channel.onclose = channel.onopen = null;
      channel.close();
    }
    if (pc) {
      pc.ontrack = pc.onconnectionstatechange = null;
      pc.close();
    }
  }

  _setState(state, detail = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, ...detail } }));
  }
}

/**
 * Start a page's connection: leave at once when the tab closes or navigates away (the server drops the
 * peer instead of waiting for ICE), rejoin when the page comes back from the back/forward cache, and
 * expose the connection with `exposed` as `window.longlive` (for the console and the tests).
 */
export function startInPage(connection, exposed = {}) {
  addEventListener("pagehide", () => connection.leave());
  addEventListener("pageshow", (event) => event.persisted && connection.start());
  window.longlive = { connection, ...exposed };
  connection.start();
}
