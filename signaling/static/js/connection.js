// One WebRTC connection to a session, kept alive: offer/answer over POST /offer, the video into a
// <video> element, the data-channel protocol, and reconnection with exponential backoff, forever.
//
// Events (EventTarget):
//   "state"   detail {state, attempt, delay, reason}   state: connecting | connected | retrying | gone | closed
//   "session" detail {session, peer, created}           after every answer (the session id to share;
//                                                       created: a gone session was recreated under its id)
//   "message" detail <protocol event>                   every event from the server (state, progress, ...)

export const State = Object.freeze({
  CONNECTING: "connecting",
  CONNECTED: "connected",
  RETRYING: "retrying",
  GONE: "gone", // the server no longer has the session (it restarted, or the session expired)
  CLOSED: "closed",
});

const GATHER_TIMEOUT_MS = 4000;
const OPEN_TIMEOUT_MS = 15000;
const DISCONNECTED_GRACE_MS = 3000;
const REQUEST_TIMEOUT_MS = 10000;

/** The server answered an error; `status` is the HTTP status, `retryAfter` seconds if it said so. */
/** What the server accepts as a session id to (re)create (the hub's SESSION_ID). */
const SESSION_ID = /^[A-Za-z0-9_-]{4,64}$/;

export class ServerError extends Error {
  constructor(status, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/** A command the server rejected; `data` is the `error` event's data ({code, message, command}). */
export class CommandError extends Error {
  constructor(data) {
    super(data.message);
    this.data = data;
  }
}

async function getJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw await serverError(response);
  return response.json();
}

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
   * @param {string|null} options.session     session to join; null creates one (controllers only)
   * @param {"controller"|"viewer"} options.role
   * @param {string|null} options.codec       "vp8" or "h264"; null lets the server choose
   * @param {{initial: number, max: number}} options.backoff  retry delays in ms
   */
  constructor({ video, session = null, role = "controller", codec = null, backoff = {} }) {
    super();
    this.video = video;
    this.session = session;
    this.role = role;
    this.codec = codec;
    this.backoff = { initial: 500, max: 8000, ...backoff };
    this.peerId = null;
    this.pc = null;
    this.channel = null;
    this.state = State.CLOSED;
    this._stopped = true;
    this._pending = new Map();
    this._nextId = 1;
    this._wake = null;
    this._drop = null;
    this._create = false;
  }

  /** Connect, and keep reconnecting whenever the connection is lost, until stop(). */
  start() {
    if (!this._stopped) return;
    this._stopped = false;
    this._loop();
  }

  stop() {
    this._stopped = true;
    this._drop?.("stopped");
    this._wake?.();
    this._teardown();
    this._setState(State.CLOSED);
  }

  /** Leave the current session for `session` (null: a new one), reconnecting at once. */
  switchSession(session) {
    this.session = session;
    this._drop?.("switching session");
    this._wake?.();
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

  // --- the loop ----------------------------------------------------------------------------------

  async _loop() {
    let attempt = 0;
    while (!this._stopped) {
      let reason;
      let retryAfter = null;
      try {
        this._setState(State.CONNECTING, { attempt });
        const dropped = await this._connect(attempt > 0);
        attempt = 0;
        reason = await dropped;
      } catch (error) {
        reason = error;
        retryAfter = error instanceof ServerError ? error.retryAfter : null;
      }
      this._teardown();
      if (this._stopped) break;
      attempt += 1;
      const delay = this._delay(attempt, retryAfter);
      const gone = reason instanceof ServerError && reason.status === 404;
      this._setState(gone ? State.GONE : State.RETRYING, {
        attempt,
        delay,
        reason: reason instanceof Error ? reason.message : String(reason),
      });
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
   * Is the server up, and does it have our session? (Asked first, so a missing one logs no 404.)
   * A controller whose session is gone (the server restarted) asks for it to be created again under the
   * same id, so that the viewer and OBS links it shared keep working; a viewer waits for it.
   */
  async _probe() {
    const { sessions } = await getJson("/sessions");
    this._create = false;
    if (this.session && !sessions.some((entry) => entry.session === this.session)) {
      if (this.role === "controller" && SESSION_ID.test(this.session)) {
        this._create = true;
        return;
      }
      throw new ServerError(404, `the server has no session ${this.session}; waiting for it to come back`);
    }
  }

  /** One connection attempt; resolves, once the channel is open, to a promise of the drop reason. */
  async _connect(isRetry) {
    if (isRetry || this.session) await this._probe();
    const { iceServers = [] } = await getJson("/ice-servers");
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
    const created = this._create;
    this._create = false;
    this.dispatchEvent(
      new CustomEvent("session", { detail: { session: answer.session, peer: answer.peer, created } }),
    );

    await this._opened(channel, dropped);
    this._setState(State.CONNECTED);
    return dropped;
  }

  async _postOffer(sdp) {
    const body = { sdp, type: "offer", role: this.role };
    if (this.session) body.session = this.session;
    if (this._create) body.create = true;
    if (this.codec) body.codec = this.codec;
    const response = await fetch("/offer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      const error = await serverError(response);
      // the session cannot be recreated under its id (taken meanwhile, or not a valid id): it is gone
      if (this._create && (error.status === 400 || error.status === 409)) throw new ServerError(404, error.message);
      throw error;
    }
    return response.json();
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
    this.video.play().catch((error) => {
      // AbortError: a newer stream replaced this one; anything else (autoplay refused) is reported
      if (error.name !== "AbortError") this.dispatchEvent(new CustomEvent("playblocked", { detail: error }));
    });
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
