"""Outputs fed on-air frames directly: the shared encoder, recording, clips, live MPEG-TS, quota, full disk.

Files are read back with Debian's ffprobe (an independent reader) and PyAV's decoder (for the stamps).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from longlive_rtc.outputs.clips import ClipRing, write_clip
from longlive_rtc.outputs.encoder import SharedEncoder
from longlive_rtc.outputs.mpegts import TsFeed
from longlive_rtc.outputs.recording import Recording
from longlive_rtc.outputs.replay import generation_frame
from longlive_rtc.outputs.store import Store, StoreFull

from .outputs_support import GEOMETRY, STEP, feed, ffprobe, needs_ffprobe, stamps, synthetic_frames, wait_encoded

pytestmark = [pytest.mark.timeout(120), needs_ffprobe]

PROMPTS = {0: "a red fox in the snow", 12: "a blue ocean at night", 25: "a green forest"}


def describe() -> dict:
    entries = [{"timestamp": t, "prompt": p, "frame": -(-t // 3) * 3} for t, p in PROMPTS.items()]
    return {"generator": "synthetic", "geometry": GEOMETRY.to_dict(), "fps": 15, "seed": 3, "schedule": entries}


@pytest.fixture(scope="module")
def frames():
    return synthetic_frames(150, PROMPTS)


def encoder(bitrate: int = 1_000_000) -> SharedEncoder:
    return SharedEncoder(GEOMETRY.width, GEOMETRY.height, 15, bitrate, name="test")


class Keep:
    def __init__(self) -> None:
        self.packets = []

    def on_packet(self, packet) -> None:
        self.packets.append(packet)


def test_the_encoder_keeps_the_on_air_timing_and_a_keyframe_a_second(frames) -> None:
    enc, keep = encoder(), Keep()
    enc.add(keep)
    try:
        feed(enc, frames[:60], enc)
        wait_encoded(enc, 60)
    finally:
        enc.close()
    assert [p.pts for p in keep.packets] == [f.pts for f in frames[:60]]
    assert [p.video_frame for p in keep.packets] == list(range(60))
    assert [i for i, p in enumerate(keep.packets) if p.keyframe] == [0, 15, 30, 45]
    assert enc.dropped == 0 and enc.failed is None


def test_with_no_output_attached_nothing_is_encoded_and_the_first_packet_after_is_a_keyframe(frames) -> None:
    enc, keep = encoder(), Keep()
    try:
        feed(enc, frames[:20])
        assert enc.unwatched == 20 and enc.frames_in == 0
        enc.add(keep, keyframe=False)
        feed(enc, frames[20:40], enc)
        wait_encoded(enc, 40)
    finally:
        enc.close()
    assert enc.frames_encoded == 20 and keep.packets[0].keyframe and keep.packets[0].pts == frames[20].pts


def test_serve_bitrate_sets_the_shared_encoders_rate(frames) -> None:
    from longlive_rtc.cli import build_parser

    assert build_parser().parse_args(["serve"]).bitrate == 2_000_000
    assert build_parser().parse_args(["serve", "--bitrate", "800k"]).bitrate == 800_000
    for bad in ("fast", "10", "1G"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["serve", "--bitrate", bad])
    sizes = {}
    for bitrate in (100_000, 2_000_000):
        enc, keep = encoder(bitrate), Keep()
        enc.add(keep)
        try:
            feed(enc, frames[:90], enc)
            wait_encoded(enc, 90)
        finally:
            enc.close()
        sizes[bitrate] = sum(len(p.data) for p in keep.packets)
    assert sizes[2_000_000] > 2 * sizes[100_000], sizes
    assert sizes[100_000] * 8 / 6 < 1.5 * 100_000, f"6 s at 100 kbit/s: {sizes[100_000]} bytes"


def test_a_flood_of_frames_drops_the_oldest_and_never_blocks(frames) -> None:
    enc, keep = SharedEncoder(GEOMETRY.width, GEOMETRY.height, 15, queue_frames=4, name="flood"), Keep()
    enc.add(keep)
    try:
        started = time.perf_counter()
        for frame in frames:
            enc.on_air(frame)
        handed = time.perf_counter() - started
        wait_encoded(enc, len(frames))
    finally:
        enc.close()
    assert enc.dropped > 0 and enc.frames_encoded + enc.dropped == len(frames)
    assert handed < 1.0, f"on_air blocked: {handed:.2f} s for {len(frames)} frames"
    assert [p.pts for p in keep.packets] == sorted(p.pts for p in keep.packets)
    assert keep.packets[-1].pts == frames[-1].pts, "the newest frame is kept"


def test_a_recording_is_an_mp4_of_every_frame_at_15_fps_with_a_replay_json(frames, tmp_path: Path) -> None:
    store = Store(tmp_path, quota=100 << 20, min_free=0)
    enc = encoder()
    try:
        recording = Recording(store, "sess-1", enc, describe)
        feed(enc, frames[:90], enc)
        wait_encoded(enc, 90)
        time.sleep(0.2)
        recording.stop()
        assert recording.wait()
    finally:
        enc.close()
    info = recording.info()
    assert info["reason"] == "stopped" and info["frames"] == 90, info
    probe = ffprobe(recording.mp4)
    assert probe["codec_name"] == "h264" and (probe["width"], probe["height"]) == (GEOMETRY.width, GEOMETRY.height)
    assert probe["r_frame_rate"] == "15/1" and probe["nb_read_frames"] == 90
    assert abs(float(probe["duration"]) - 6.0) < 0.01
    seen = stamps(recording.mp4)
    assert [s.frame for s in seen] == list(range(90)), "every frame once, in order"
    document = json.loads(recording.json.read_text())
    assert document["frames"] == generation_frame(89) + 1 == 24
    assert document["schedule"] == [{"timestamp": 0, "prompt": PROMPTS[0]}, {"timestamp": 12, "prompt": PROMPTS[12]}]
    assert document["seed"] == 3 and document["video_frames"] == {"first": 0, "last": 89}
    assert document["recording"]["frames"] == 90 and document["recording"]["reason"] == "stopped"
    assert "--frames 24 --seed 3" in document["replay"]
    assert store.used == recording.mp4.stat().st_size + recording.json.stat().st_size


def test_the_quota_stops_a_recording_and_leaves_a_valid_file(frames, tmp_path: Path) -> None:
    store = Store(tmp_path, quota=150_000, min_free=0)
    enc = encoder(bitrate=400_000)  # 50 KB a second: the quota holds about 3 s
    try:
        recording = Recording(store, "sess-q", enc, describe)
        feed(enc, frames, enc)
        wait_encoded(enc, len(frames))
        assert recording.wait(), "the recording ended by itself"
    finally:
        enc.close()
    info = recording.info()
    assert info["reason"] == "quota" and "quota" in info["message"], info
    assert recording.mp4.stat().st_size + recording.json.stat().st_size <= 150_000
    probe = ffprobe(recording.mp4)
    assert 0 < probe["nb_read_frames"] == info["frames"] < len(frames)
    assert [s.frame for s in stamps(recording.mp4)] == list(range(info["frames"]))
    assert abs(info["seconds"] - float(probe["duration"])) < 0.01, "the seconds the file holds, not those muxed"
    document = json.loads(recording.json.read_text())
    assert document["video_frames"] == {"first": 0, "last": info["frames"] - 1}, "the last frame in the file"
    assert document["recording"]["seconds"] == info["seconds"]
    again = encoder(bitrate=400_000)
    with pytest.raises(StoreFull) as refused:
        Recording(store, "sess-q", again, describe)
    again.close()
    assert refused.value.reason == "quota" and "delete recordings" in str(refused.value)


def test_a_full_disk_stops_a_recording_and_leaves_a_valid_file(frames, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(disk)], capture_output=True
    ).returncode == 0  # fmt: skip
    if not mounted:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        enc = encoder()
        try:
            refused = Store(disk, quota=100 << 20)  # the default floor of free space: refused at once
            with pytest.raises(StoreFull) as full:
                Recording(refused, "sess-d", enc, describe)
            assert full.value.reason == "disk full"
            recording = Recording(Store(disk, quota=100 << 20, min_free=0), "sess-d", enc, describe)
            feed(enc, frames, enc)
            wait_encoded(enc, len(frames))
            assert recording.wait(), "the recording ended by itself"
        finally:
            enc.close()
        info = recording.info()
        assert info["reason"] == "disk full", info
        probe = ffprobe(recording.mp4)
        assert 0 < probe["nb_read_frames"] == info["frames"] < len(frames)
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_clip_is_the_last_n_seconds_from_a_keyframe(frames, tmp_path: Path) -> None:
    store = Store(tmp_path, quota=100 << 20, min_free=0)
    enc, ring = encoder(), ClipRing(seconds=5.0)
    enc.add(ring)
    try:
        feed(enc, frames, enc)  # 10 s
        wait_encoded(enc, len(frames))
    finally:
        enc.close()
    assert 5.0 <= ring.held_seconds <= 6.0 + 1e-9, "the ring holds whole seconds past its length, no more"
    packets = ring.last(3.0)
    assert packets[0].keyframe
    info = write_clip(packets, store, "sess-c", (GEOMETRY.width, GEOMETRY.height), 15, describe, 3.0)
    probe = ffprobe(tmp_path / "sess-c" / info["name"])
    assert abs(info["seconds"] - 3.0) <= 0.5 and probe["nb_read_frames"] == info["frames"] == len(packets)
    assert [s.frame for s in stamps(tmp_path / "sess-c" / info["name"])] == [p.video_frame for p in packets]
    assert packets[-1].video_frame == 149
    whole = ring.last(60.0)
    assert whole[0].pts == min(p.pts for p in whole), "asking for more than is held gives all of it"


async def test_live_ts_readers_share_one_encode_and_a_slow_one_is_dropped(frames, tmp_path: Path) -> None:
    enc = encoder()
    feed_ = TsFeed(enc, asyncio.get_running_loop(), max_lag=1.0)
    fast, slow = feed_.open(), feed_.open()
    received = bytearray()

    async def read() -> None:
        while (data := await fast.next()) is not None:
            received.extend(data)

    reader = asyncio.ensure_future(read())
    try:
        for frame in frames[:45]:
            enc.on_air(frame)
            await asyncio.sleep(1 / 15)
        late = feed_.open()  # joins mid-stream: starts at a keyframe
        late_data = bytearray()

        async def read_late() -> None:
            while (data := await late.next()) is not None:
                late_data.extend(data)

        late_reader = asyncio.ensure_future(read_late())
        for frame in frames[45:]:
            enc.on_air(frame)
            await asyncio.sleep(1 / 15)
        await asyncio.sleep(0.5)
    finally:
        feed_.close()
        enc.close()
    await asyncio.wait_for(asyncio.gather(reader, late_reader), 5)
    assert slow.closed is not None and slow.closed.startswith("too slow") and feed_.dropped == 1
    assert enc.stats()["frames_encoded"] == len(frames), "one encode for every reader"
    for name, data in (("all.ts", received), ("late.ts", late_data)):
        (tmp_path / name).write_bytes(data)
    whole, joined = ffprobe(tmp_path / "all.ts"), ffprobe(tmp_path / "late.ts")
    assert whole["nb_read_frames"] == len(frames) and whole["r_frame_rate"] == "15/1"
    assert 0 < joined["nb_read_frames"] <= len(frames) - 45
    assert [s.frame for s in stamps(tmp_path / "late.ts")][-1] == 149
    assert len(late_data) % 188 == 0 and late_data[0] == 0x47


def test_a_session_id_is_never_a_path_out_of_the_recordings_folder(tmp_path: Path) -> None:
    name = "rec-20260101T000000Z-abcdef.mp4"
    (tmp_path / name).write_bytes(b"outside the recordings folder")
    store = Store(tmp_path / "recordings", quota=1 << 20)
    store.folder("sess-1")
    assert store.path("..", name) is None and store.files("..") == [] and not store.delete("..", name)
    with pytest.raises(ValueError):
        store.new_stem("../x", "rec")
    assert (tmp_path / name).exists()


def test_the_replay_frame_of_a_video_frame() -> None:
    assert [generation_frame(v) for v in (0, 1, 4, 5, 8, 9, 89)] == [0, 1, 1, 2, 2, 3, 23]
    assert STEP == 6000
