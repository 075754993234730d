// Receive statistics of the video from RTCPeerConnection.getStats(), sampled once a second.

/** One sample: the inbound video, its codec and the selected candidate pair's round-trip time. */
async function readVideoStats(pc) {
  const report = await pc.getStats();
  let inbound = null;
  let pair = null;
  const byId = new Map();
  report.forEach((entry) => {
    byId.set(entry.id, entry);
    if (entry.type === "inbound-rtp" && entry.kind === "video") inbound = entry;
    if (entry.type === "candidate-pair" && entry.nominated && entry.state === "succeeded") pair = entry;
  });
  if (!inbound) return null;
  const codec = byId.get(inbound.codecId);
  return {
    at: inbound.timestamp,
    width: inbound.frameWidth ?? 0,
    height: inbound.frameHeight ?? 0,
    framesPerSecond: inbound.framesPerSecond ?? 0,
    framesDecoded: inbound.framesDecoded ?? 0,
    freezeCount: inbound.freezeCount ?? 0,
    packetsLost: inbound.packetsLost ?? 0,
    bytesReceived: inbound.bytesReceived ?? 0,
    codec: codec?.mimeType?.replace(/^video\//, "") ?? "",
    roundTripTime: pair?.currentRoundTripTime ?? null,
  };
}

/** Polls a connection's stats every `intervalMs` and calls `onSample(sample)` with bitrate added. */
export class StatsMonitor {
  constructor(connection, onSample, intervalMs = 1000) {
    this.connection = connection;
    this.onSample = onSample;
    this.intervalMs = intervalMs;
    this.previous = null;
    this.timer = null;
  }

  start() {
    if (this.timer !== null) return;
    this.timer = setInterval(() => this.poll(), this.intervalMs);
    this.poll();
  }

  async poll() {
    const pc = this.connection.pc;
    const sample = pc && pc.connectionState === "connected" ? await readVideoStats(pc).catch(() => null) : null;
    if (!sample) {
      this.previous = null;
      this.onSample(null);
      return;
    }
    const previous = this.previous;
    const seconds = previous ? (sample.at - previous.at) / 1000 : 0;
    sample.bitrate = seconds > 0 ? (8 * (sample.bytesReceived - previous.bytesReceived)) / seconds : null;
    this.previous = sample;
    this.onSample(sample);
  }
}

/** The numbers a person reads, as [label, value] pairs. */
export function formatStats(sample) {
  if (!sample) return [["video", "waiting"]];
  const rtt = sample.roundTripTime === null ? "–" : `${Math.round(sample.roundTripTime * 1000)} ms`;
  const bitrate = sample.bitrate === null ? "–" : `${Math.round(sample.bitrate / 1000)} kbps`;
  return [
    ["fps", sample.framesPerSecond.toFixed(0)],
    ["bitrate", bitrate],
    ["codec", sample.codec || "–"],
    ["size", sample.width ? `${sample.width}×${sample.height}` : "–"],
    ["freezes", `${sample.freezeCount}`],
    ["round trip", rtt],
    ["decoded", `${sample.framesDecoded}`],
    ["lost", `${sample.packetsLost}`],
  ];
}
