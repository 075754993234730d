"""A WHEP player built on GStreamer's webrtcbin, run with Debian's python3 (python3-gi), not the venv.

Offers to receive one video codec, POSTs the complete offer (non-trickle WHEP), decodes what arrives and
prints one JSON report on stdout: frames decoded in the measured window (it ends at ``--frames`` frames, or
``--seconds`` after the first, whichever comes first), picture size, the answer's DTLS
setup, the DELETE status. ``--check`` only tells whether every element it needs is installed.

    /usr/bin/python3 tests/gst_whep.py --url http://host:port/whep/<session> --codec vp8 --frames 45 --seconds 30
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

ELEMENTS = ("webrtcbin", "nicesrc", "dtlssrtpdec", "srtpdec", "rtpvp8depay", "vp8dec", "rtph264depay", "decodebin")
CAPS = {
    "vp8": "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000",
    "h264": "application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000,"
    "packetization-mode=(string)1,profile-level-id=(string){profile}",
}


def load_gst():
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstWebRTC", "1.0")
    gi.require_version("GstSdp", "1.0")
    from gi.repository import GLib, Gst, GstSdp, GstWebRTC

    Gst.init(None)
    return GLib, Gst, GstSdp, GstWebRTC


def check() -> int:
    try:
        _, Gst, _, _ = load_gst()
    except (ImportError, ValueError) as exc:
        print(f"python3-gi or the GStreamer typelibs are missing: {exc}")
        return 1
    missing = [name for name in ELEMENTS if Gst.ElementFactory.find(name) is None]
    if not any(Gst.ElementFactory.find(name) for name in ("avdec_h264", "openh264dec")):
        missing.append("avdec_h264|openh264dec")
    if missing:
        print(f"GStreamer elements missing: {', '.join(missing)}")
        return 1
    print(f"GStreamer {Gst.version_string()}")
    return 0


class Player:
    def __init__(self, args: argparse.Namespace) -> None:
        self.GLib, self.Gst, self.GstSdp, self.GstWebRTC = load_gst()
        self.args = args
        self.report: dict = {"frames": 0, "ok": False}
        self.first_frame: float | None = None
        self.window_start_frames = 0
        self.loop = self.GLib.MainLoop()
        Gst = self.Gst
        self.pipe = Gst.Pipeline.new("whep")
        self.webrtc = Gst.ElementFactory.make("webrtcbin", "webrtc")
        self.webrtc.set_property("bundle-policy", self.GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        self.pipe.add(self.webrtc)
        caps = Gst.Caps.from_string(CAPS[args.codec].format(profile=args.profile))
        self.webrtc.emit("add-transceiver", self.GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY, caps)
        self.webrtc.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.webrtc.connect("pad-added", self.on_pad)
        self.webrtc.connect("notify::ice-gathering-state", self.on_gathering)
        self.webrtc.connect("notify::connection-state", self.on_state)
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_error)

    def run(self) -> dict:
        self.pipe.set_state(self.Gst.State.PLAYING)
        self.GLib.timeout_add_seconds(int(self.args.timeout), self.fail, "timed out")
        self.loop.run()
        self.pipe.set_state(self.Gst.State.NULL)
        return self.report

    def fail(self, message: str) -> bool:
        self.report["error"] = message
        self.loop.quit()
        return False

    def on_error(self, _bus, message) -> None:
        error, debug = message.parse_error()
        self.fail(f"{error.message} ({debug})")

    def on_state(self, *_args) -> None:
        state = self.webrtc.get_property("connection-state")
        self.report.setdefault("states", []).append(state.value_nick)
        if state == self.GstWebRTC.WebRTCPeerConnectionState.FAILED:
            self.fail("connection failed")

    def on_negotiation_needed(self, _webrtc) -> None:
        if "offered" in self.report:
            return
        self.report["offered"] = True
        promise = self.Gst.Promise.new_with_change_func(self.on_offer, self.webrtc, None)
        self.webrtc.emit("create-offer", None, promise)

    def on_offer(self, promise, _webrtc, _data) -> None:
        promise.wait()
        reply = promise.get_reply()  # owns the offer: keep it referenced while the offer is used
        offer = reply.get_value("offer")
        done = self.Gst.Promise.new()
        self.webrtc.emit("set-local-description", offer, done)
        done.interrupt()

    def on_gathering(self, *_args) -> None:
        if self.webrtc.get_property("ice-gathering-state") != self.GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            return
        offer = self.webrtc.get_property("local-description").sdp.as_text()
        self.report["offerCodecs"] = sorted({line.split()[1] for line in offer.splitlines() if "a=rtpmap:" in line})
        self.GLib.idle_add(self.post, offer)

    def request(self, method: str, url: str, body: bytes | None = None) -> tuple[int, dict, str]:
        headers = {"Content-Type": "application/sdp"} if body is not None else {}
        if self.args.token:
            headers["Authorization"] = f"Bearer {self.args.token}"
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode()

    def post(self, offer: str) -> bool:
        status, headers, text = self.request("POST", self.args.url, offer.encode())
        self.report.update(status=status, location=headers.get("Location"), link=headers.get("Link"))
        if status != 201:
            self.fail(f"HTTP {status}: {text}")
            return False
        self.report["answerSetup"] = next((line.split(":")[1] for line in text.splitlines() if "a=setup:" in line), "")
        _, sdp = self.GstSdp.SDPMessage.new_from_text(text)
        answer = self.GstWebRTC.WebRTCSessionDescription.new(self.GstWebRTC.WebRTCSDPType.ANSWER, sdp)
        self.webrtc.emit("set-remote-description", answer, None)
        return False

    def on_pad(self, _webrtc, pad) -> None:
        if pad.direction != self.Gst.PadDirection.SRC:
            return
        Gst = self.Gst
        decode = Gst.ElementFactory.make("decodebin")
        convert = Gst.ElementFactory.make("videoconvert")
        sink = Gst.ElementFactory.make("appsink")
        sink.set_property("emit-signals", True)
        sink.set_property("sync", False)
        sink.connect("new-sample", self.on_sample)
        for element in (decode, convert, sink):
            self.pipe.add(element)
            element.sync_state_with_parent()
        convert.link(sink)
        decode.connect("pad-added", lambda _d, p: p.link(convert.get_static_pad("sink")))
        pad.link(decode.get_static_pad("sink"))

    def on_sample(self, sink) -> object:
        sample = sink.emit("pull-sample")
        structure = sample.get_caps().get_structure(0)
        self.report.update(width=structure.get_value("width"), height=structure.get_value("height"))
        self.report["frames"] += 1
        now = time.monotonic()
        if self.first_frame is None:
            self.first_frame = now
            self.window_start_frames = self.report["frames"]
            self.GLib.timeout_add(int(self.args.seconds * 1000), self.finish)
        if self.args.frames and self.report["frames"] - self.window_start_frames == self.args.frames:
            self.GLib.idle_add(self.finish)  # on the main loop, like the timeout
        self.report["last_frame_at"] = now
        return self.Gst.FlowReturn.OK

    def finish(self) -> bool:
        assert self.first_frame is not None
        if "framesInWindow" in self.report:  # the frame count came first, then the timeout (or the other way)
            return False
        self.report["elapsed"] = time.monotonic() - self.first_frame
        self.report["framesInWindow"] = self.report["frames"] - self.window_start_frames
        if self.report.get("location"):
            url = urllib.parse.urljoin(self.args.url, self.report["location"])
            self.report["deleteStatus"] = self.request("DELETE", url)[0]
        self.report["ok"] = True
        self.loop.quit()
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--url")
    parser.add_argument("--token")
    parser.add_argument("--codec", choices=sorted(CAPS), default="vp8")
    parser.add_argument("--profile", default="42e01f", help="H.264 profile-level-id to offer")
    parser.add_argument("--seconds", type=float, default=5.0, help="the window's longest duration")
    parser.add_argument("--frames", type=int, default=0, help="end the window at this many frames (0: no limit)")
    parser.add_argument("--timeout", type=float, default=40.0)
    args = parser.parse_args()
    if args.check:
        return check()
    report = Player(args).run()
    report.pop("last_frame_at", None)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
