"""A WHIP ingest built on GStreamer's webrtcbin, run with Debian's python3 (python3-gi), not the venv.

Serves one WHIP endpoint on 127.0.0.1: a POSTed offer (``application/sdp``) is answered by webrtcbin once
its ICE gathering completes (non-trickle), 201 with a ``Location``; what arrives is decoded and counted.
Prints JSON lines on stdout: ``{"url"}`` when listening; once ``--frames`` frames were decoded (or
``--seconds`` after the first decoded frame, whichever comes first) the window's report (frames, their
buffer timestamps increasing, the POST's Authorization); then, once the resource is DELETEd (or
``--timeout`` passes), ``{"deleted"}``. ``--check`` only tells whether every
element it needs is installed.

    /usr/bin/python3 tests/gst_whip_ingest.py --frames 40 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from gst_whep import check, load_gst  # the same elements: webrtcbin, nice, DTLS/SRTP, depayloaders, decoders

RESOURCE = "/whip/resource/1"


def say(report: dict) -> None:
    print(json.dumps(report), flush=True)


class Ingest:
    def __init__(self, args: argparse.Namespace) -> None:
        self.GLib, self.Gst, self.GstSdp, self.GstWebRTC = load_gst()
        self.args = args
        self.loop = self.GLib.MainLoop()
        self.frames = 0
        self.window: list[int] = []  # buffer pts of the frames in the window, ns
        self.first: float | None = None
        self.reported = False
        self.deleted = threading.Event()
        self.answer: str | None = None
        self.answered = threading.Event()
        self.authorization: str | None = None
        self.error: str | None = None
        self.pipe = self.webrtc = None

    # --- on the GLib loop ---------------------------------------------------------------------------

    def offer(self, sdp_text: str) -> bool:
        Gst, GstWebRTC = self.Gst, self.GstWebRTC
        self.pipe = Gst.Pipeline.new("whip")
        self.webrtc = Gst.ElementFactory.make("webrtcbin", "webrtc")
        self.webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        self.pipe.add(self.webrtc)
        self.webrtc.connect("pad-added", self.on_pad)
        self.webrtc.connect("notify::ice-gathering-state", self.on_gathering)
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_error)
        self.pipe.set_state(Gst.State.PLAYING)
        _, sdp = self.GstSdp.SDPMessage.new_from_text(sdp_text)
        offer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.OFFER, sdp)
        promise = Gst.Promise.new_with_change_func(self.on_remote_set, None, None)
        self.webrtc.emit("set-remote-description", offer, promise)
        return False

    def on_remote_set(self, promise, *_args) -> None:
        promise.wait()
        self.webrtc.emit("create-answer", None, self.Gst.Promise.new_with_change_func(self.on_answer, None, None))

    def on_answer(self, promise, *_args) -> None:
        promise.wait()
        reply = promise.get_reply()  # owns the answer: keep it referenced while it is used
        answer = reply.get_value("answer")
        done = self.Gst.Promise.new()
        self.webrtc.emit("set-local-description", answer, done)
        done.interrupt()

    def on_gathering(self, *_args) -> None:
        if self.webrtc.get_property("ice-gathering-state") != self.GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            return
        if not self.answered.is_set():
            self.answer = self.webrtc.get_property("local-description").sdp.as_text()
            self.answered.set()

    def on_error(self, _bus, message) -> None:
        error, debug = message.parse_error()
        self.error = f"{error.message} ({debug})"[:300]

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
        self.frames += 1
        now = time.monotonic()
        if self.first is None:
            self.first = now
            self.GLib.timeout_add(int(self.args.seconds * 1000), self.report)
        if not self.reported:
            self.window.append(sample.get_buffer().pts)
            if self.args.frames and len(self.window) == self.args.frames:
                self.GLib.idle_add(self.report)  # on the main loop, like the timeout
        return self.Gst.FlowReturn.OK

    def report(self) -> bool:
        assert self.first is not None
        if self.reported:  # the frame count came first, then the timeout (or the other way round)
            return False
        self.reported = True
        elapsed = time.monotonic() - self.first
        pts = self.window
        say({"frames": len(pts), "elapsed": round(elapsed, 3), "fps": round(len(pts) / elapsed, 2),
             "pts_increasing": len(pts) > 1 and all(b > a for a, b in zip(pts, pts[1:], strict=False)),
             "authorization": self.authorization, "error": self.error})  # fmt: skip
        return False

    def stop(self) -> bool:
        if self.pipe is not None:
            self.pipe.set_state(self.Gst.State.NULL)
        self.loop.quit()
        return False

    # --- HTTP (its own threads) -------------------------------------------------------------------------

    def handler(self) -> type[BaseHTTPRequestHandler]:
        ingest = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args) -> None:
                pass

            def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/whip" or self.headers.get_content_type() != "application/sdp":
                    return self.reply(415 if self.path == "/whip" else 404)
                if ingest.webrtc is not None:
                    return self.reply(409)  # one publisher at a time
                ingest.authorization = self.headers.get("Authorization")
                ingest.GLib.idle_add(ingest.offer, body.decode())
                if not ingest.answered.wait(20) or ingest.answer is None:
                    return self.reply(500, b"no answer")
                self.reply(201, ingest.answer.encode(), {"Content-Type": "application/sdp", "Location": RESOURCE})

            def do_DELETE(self) -> None:
                if self.path != RESOURCE:
                    return self.reply(404)
                self.reply(200)
                ingest.deleted.set()

        return Handler

    def run(self) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        threading.Thread(target=server.serve_forever, daemon=True).start()
        say({"url": f"http://127.0.0.1:{server.server_address[1]}/whip"})

        def wait_delete() -> None:
            self.deleted.wait(self.args.timeout)
            say({"deleted": self.deleted.is_set(), "frames_total": self.frames})
            self.GLib.idle_add(self.stop)

        threading.Thread(target=wait_delete, daemon=True).start()
        self.loop.run()
        server.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--seconds", type=float, default=10.0, help="the window's longest duration")
    parser.add_argument("--frames", type=int, default=0, help="end the window at this many frames (0: no limit)")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up waiting for the DELETE")
    args = parser.parse_args()
    if args.check:
        return check()
    Ingest(args).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
