// A third-party player: POSTs a non-trickle offer (WHEP or the JSON /offer), plays the answer for a while and
// leaves its measurements in window.report. Query: endpoint, mode (whep|offer), token, seconds and frames (the
// window ends at that many frames decoded, or after that many seconds), codec
// (a mimeType such as video/H264 to offer only that codec), session and prompt (offer mode: the session to
// join, and the prompt the data channel schedules before it sends start).
const params = new URLSearchParams(location.search);
const endpoint = params.get("endpoint");
const mode = params.get("mode") ?? "whep";
const token = params.get("token");
const seconds = Number(params.get("seconds") ?? "5");
const frames = Number(params.get("frames") ?? "0"); // 0: the window lasts `seconds`
const codec = params.get("codec");
const video = document.getElementById("video");
const report = { events: {}, callbacks: 0 };

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && resolve());
  });
}

function countFrames() {
  if (!video.requestVideoFrameCallback) return;
  const tick = () => { report.callbacks += 1; video.requestVideoFrameCallback(tick); };
  video.requestVideoFrameCallback(tick);
}

async function post(pc) {
  const headers = { "Content-Type": mode === "whep" ? "application/sdp" : "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const offer = pc.localDescription.sdp;
  report.offer = offer;
  report.offerCandidates = offer.split("\r\n").filter((l) => l.startsWith("a=candidate:"));
  report.offerEndOfCandidates = offer.includes("a=end-of-candidates");
  report.offerCodecs = [...new Set(offer.split("\r\n").filter((l) => l.startsWith("a=rtpmap:")).map((l) => l.split(" ")[1]))];
  const session = params.get("session");
  const body = mode === "whep" ? offer : JSON.stringify({ sdp: offer, type: "offer", ...(session ? { session } : {}) });
  const response = await fetch(endpoint, { method: "POST", headers, body });
  report.status = response.status;
  report.location = response.headers.get("Location");
  report.link = response.headers.get("Link");
  const text = await response.text();
  if (!response.ok) throw new Error(`HTTP ${response.status}: ${text}`);
  return mode === "whep" ? text : JSON.parse(text).sdp;
}

async function run() {
  const pc = new RTCPeerConnection();
  window.pc = pc;
  const transceiver = pc.addTransceiver("video", { direction: "recvonly" });
  if (codec) {
    const all = RTCRtpReceiver.getCapabilities("video").codecs;
    transceiver.setCodecPreferences(all.filter((c) => c.mimeType === codec || c.mimeType === "video/rtx"));
  }
  let channel = null;
  if (mode === "offer") {
    channel = pc.createDataChannel("commands");
    channel.onmessage = (m) => {
      const event = JSON.parse(m.data);
      report.events[event.type] = (report.events[event.type] ?? 0) + 1;
    };
    channel.onopen = () => {
      const prompt = params.get("prompt") ?? "a lighthouse at dusk";
      channel.send(JSON.stringify({ type: "schedule_prompt", data: { new_prompt: prompt, timestamp: 0 }, id: 1 }));
      channel.send(JSON.stringify({ type: "start", id: 2 }));
    };
  }
  pc.ontrack = (event) => { video.srcObject = new MediaStream([event.track]); countFrames(); };
  pc.onconnectionstatechange = () => { (report.states ??= []).push(pc.connectionState); };
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const answer = await post(pc);
  await pc.setRemoteDescription({ type: "answer", sdp: answer });
  report.answerSetup = (answer.match(/a=setup:(\w+)/) ?? [])[1];
  const began = performance.now();
  while (pc.connectionState !== "connected") {
    if (pc.connectionState === "failed" || performance.now() - began > 20000) {
      throw new Error(`connection ${pc.connectionState}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  report.connectMs = performance.now() - began;
  while (video.videoWidth === 0 && performance.now() - began < 20000) await new Promise((r) => setTimeout(r, 50));
  const first = { at: performance.now(), callbacks: report.callbacks, decoded: await decoded(pc) };
  // the window ends at `frames` frames decoded (a progress check, which load cannot starve) or after `seconds`
  while (performance.now() - first.at < seconds * 1000) {
    await new Promise((r) => setTimeout(r, 200));
    if (frames && (await decoded(pc)).frames - first.decoded.frames >= frames) break;
  }
  const last = { at: performance.now(), callbacks: report.callbacks, decoded: await decoded(pc) };
  const elapsed = (last.at - first.at) / 1000;
  Object.assign(report, {
    width: video.videoWidth, height: video.videoHeight, elapsed,
    framesDecoded: last.decoded.frames, decodedInWindow: last.decoded.frames - first.decoded.frames,
    callbacksInWindow: last.callbacks - first.callbacks, codec: last.decoded.codec,
    remoteCandidateType: await remoteCandidateType(pc), localCandidateType: await localCandidateType(pc),
  });
  if (report.location) {  // leave like a WHEP client: DELETE the resource
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    report.deleteStatus = (await fetch(new URL(report.location, endpoint), { method: "DELETE", headers })).status;
  }
  pc.close();
}

async function decoded(pc) {
  const stats = await pc.getStats();
  let out = { frames: 0, codec: "" };
  stats.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") {
      out = { frames: s.framesDecoded ?? 0, codec: stats.get(s.codecId)?.mimeType ?? "" };
    }
  });
  return out;
}

async function selectedPair(pc) {
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach((s) => { if (s.type === "candidate-pair" && s.selected !== false && s.state === "succeeded") pair ??= s; });
  return pair ? { stats, pair } : null;
}

async function remoteCandidateType(pc) {
  const found = await selectedPair(pc);
  return found ? found.stats.get(found.pair.remoteCandidateId)?.candidateType ?? "" : "";
}

async function localCandidateType(pc) {
  const found = await selectedPair(pc);
  return found ? found.stats.get(found.pair.localCandidateId)?.candidateType ?? "" : "";
}

run().then(
  () => { report.ok = true; window.report = report; },
  (error) => { report.ok = false; report.error = String(error); window.report = report; },
);
