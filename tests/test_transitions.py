"""Transitions (recache, cut, blend): validation, the schedule, the synthetic generator's stamps, and a real
aiortc client reading them off the received video."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from longlive_rtc import protocol
from longlive_rtc.generators import Geometry, SyntheticGenerator
from longlive_rtc.generators.stamp import read_stamp, read_transition_stamp, stamp_rows
from longlive_rtc.generators.synthetic import Scene
from longlive_rtc.schedule import MAX_BLEND_BLOCKS, PromptSchedule, Transition
from longlive_rtc.stream import BlockStream

from .rtc_client import Client, Server

TALL = Geometry(width=320, height=192)  # tall enough for the transition band

#: 0 red fox; a cut to a blue sea at 3; a 2-block blend to a green forest at 6; a recache to purple at 12.
SCHEDULE = [
    (0, "a red fox", None),
    (3, "a blue sea", {"mode": "cut"}),
    (6, "a green forest", {"mode": "blend", "blocks": 2}),
    (12, "a purple night", {"mode": "recache"}),
]
#: block start -> (prompt number, cut count, blend weight * 255) the stamps must show
EXPECTED = {0: (0, 0, 255), 3: (1, 1, 255), 6: (2, 1, 128), 9: (2, 1, 255), 12: (3, 1, 255), 15: (3, 1, 255)}


def block_of(video_frame: int) -> int:
    """Block start of the block a video frame belongs to (9 frames in block 0, 12 after)."""
    return 0 if video_frame < 9 else 3 * (1 + (video_frame - 9) // 12)


def schedule_command(timestamp: int, prompt: str, transition: object = None) -> dict:
    data: dict = {"new_prompt": prompt, "timestamp": timestamp}
    if transition is not None:
        data["transition"] = transition
    return {"type": "schedule_prompt", "data": data}


@pytest.mark.parametrize(
    ("transition", "complaint"),
    [
        ("cut", "'transition' must be an object"),
        ({}, "'transition.mode' must be one of"),
        ({"mode": "dissolve"}, "'transition.mode' must be one of"),
        ({"mode": "cut", "blocks": 2}, "unknown fields for a 'cut' transition"),
        ({"mode": "recache", "curve": "linear"}, "unknown fields for a 'recache' transition"),
        ({"mode": "blend"}, "'transition.blocks' is required"),
        ({"mode": "blend", "blocks": 0}, f"'transition.blocks' must be in 1..{MAX_BLEND_BLOCKS}"),
        ({"mode": "blend", "blocks": MAX_BLEND_BLOCKS + 1}, "'transition.blocks' must be in"),
        ({"mode": "blend", "blocks": True}, "'transition.blocks' must be an integer"),
        ({"mode": "blend", "blocks": 2.5}, "'transition.blocks' must be an integer"),
        ({"mode": "blend", "blocks": 2, "curve": "cubic"}, "'transition.curve' must be one of"),
        ({"mode": "blend", "blocks": 2, "speed": 1}, "unknown fields for a 'blend' transition: 'speed'"),
    ],
)
def test_invalid_transitions_are_refused_with_invalid_field(transition: object, complaint: str) -> None:
    reply = protocol.validate_command({**schedule_command(3, "p", transition), "id": 7})
    assert isinstance(reply, protocol.Event) and reply.type == "error", reply
    assert reply.data["code"] == "invalid_field" and reply.data["command"] == "schedule_prompt" and reply.id == 7
    assert complaint in reply.data["message"], reply.data["message"]


def test_valid_transitions_are_normalised_and_match_the_schema() -> None:
    import jsonschema

    schema = protocol.json_schema()
    cases = [
        (None, None),
        ({"mode": "recache"}, {"mode": "recache"}),
        ({"mode": "cut"}, {"mode": "cut"}),
        ({"mode": "blend", "blocks": 4}, {"mode": "blend", "blocks": 4, "curve": "linear"}),
        ({"mode": "blend", "blocks": MAX_BLEND_BLOCKS, "curve": "slerp"}, None),
    ]
    for given, normalised in cases:
        message = schedule_command(0, "p", given)
        jsonschema.validate(message, schema)
        command = protocol.validate_command(message)
        assert isinstance(command, protocol.Command), command
        assert command.data.get("transition") == (normalised or given)
    for bad in [{"mode": "blend"}, {"mode": "cut", "blocks": 1}, {"mode": "blend", "blocks": 0}]:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(schedule_command(0, "p", bad), schema)


def test_entries_carry_their_transition_and_state_lists_it() -> None:
    schedule = PromptSchedule()
    schedule.put(0, "a")
    schedule.put(4, "b", Transition("blend", 3, "slerp"))
    schedule.put(9, "c", Transition("cut"))
    assert [e.to_dict() for e in schedule.snapshot()] == [
        {"timestamp": 0, "prompt": "a", "frame": 0},  # the default recache is not listed
        {"timestamp": 4, "prompt": "b", "frame": 6, "transition": {"mode": "blend", "blocks": 3, "curve": "slerp"}},
        {"timestamp": 9, "prompt": "c", "frame": 9, "transition": {"mode": "cut"}},
    ]
    schedule.rewind()
    assert schedule.snapshot()[2].transition == Transition("cut"), "a new start keeps the transitions"
    assert Transition.from_dict({"mode": "blend", "blocks": 2, "curve": "linear"}) == Transition("blend", 2)
    with pytest.raises(ValueError):
        Transition("blend", 0)


def stream_blocks(schedule: list[tuple[int, str, object]], blocks: int, seed: int = 3) -> list:
    generator = SyntheticGenerator(TALL)
    plan = PromptSchedule()
    for timestamp, prompt, transition in schedule:
        plan.put(timestamp, prompt, Transition.from_dict(transition))  # type: ignore[arg-type]
    stream = BlockStream(generator, plan)
    stream.begin(seed)
    return [stream.step() for _ in range(blocks)]


def test_synthetic_stamps_show_cut_and_blend_at_their_blocks() -> None:
    blocks = stream_blocks(SCHEDULE, 6)
    for block in blocks:
        for frame in block.frames:
            stamp, band = read_stamp(frame), read_transition_stamp(frame)
            assert stamp is not None and band is not None
            assert (stamp.prompt, band.take, band.weight) == EXPECTED[block.start_frame], (block.start_frame, stamp)
    assert [b.blend_weight for b in blocks] == [None, None, 0.5, 1.0, None, None]
    picture = TALL.height - stamp_rows(TALL.height)
    # the cut: the new scene as a stream begun there would show it (motion restarted), the frame counter going on
    fresh = np.concatenate([b.frames for b in stream_blocks([(0, "a blue sea", None)], 2)])
    cut = blocks[1]
    assert read_stamp(cut.frames[0]).frame == cut.first_video_frame == 9  # type: ignore[union-attr]
    assert np.array_equal(cut.frames[:, :picture], fresh[:12, :picture])
    # the blend: half of each scene on its first block, the new scene alone on its last (take-relative frames)
    sea, forest = scene_pictures("a blue sea", range(12, 36)), scene_pictures("a green forest", range(12, 36))
    first, last = blocks[2], blocks[3]
    assert first.first_video_frame - cut.first_video_frame == 12
    mean = (sea[:12].astype(np.int16) + forest[:12].astype(np.int16)) / 2
    assert np.abs(first.frames[:, :picture].astype(np.int16) - mean).max() <= 1
    assert np.array_equal(last.frames[:, :picture], forest[12:])


def scene_pictures(prompt: str, indices: range, seed: int = 3) -> np.ndarray:
    """What the synthetic scene of ``prompt`` draws at take-relative video frames ``indices``."""
    rows = TALL.height - stamp_rows(TALL.height)
    scene = Scene(SyntheticGenerator(TALL).encode_prompt(prompt), seed, TALL)
    out = np.empty((len(indices), rows, TALL.width, 3), dtype=np.uint8)
    for i, index in enumerate(indices):
        scene.render(index, out[i])
    return out


@pytest.mark.timeout(120)
async def test_a_webrtc_client_sees_the_cut_and_the_blend_in_the_stamps() -> None:
    """The synthetic stamps, read off VP8 video by a real aiortc peer, show each transition at its block."""
    async with Server(geometry=TALL) as server:
        client = Client()
        try:
            await client.connect(server.url)
            for i, (timestamp, prompt, transition) in enumerate(SCHEDULE):
                client.send("schedule_prompt", f"s{i}", **schedule_command(timestamp, prompt, transition)["data"])
                assert (await client.reply_to(f"s{i}"))["type"] == "ack"
            client.send("schedule_prompt", "bad", new_prompt="x", timestamp=30, transition={"mode": "blend"})
            refused = await client.reply_to("bad")
            assert refused["type"] == "error" and refused["data"]["code"] == "invalid_field"
            client.send("get_state", "st")
            state = await client.wait_event(lambda e: e["type"] == "state" and len(e["data"].get("scheduled", ())) == 4)
            listed = {e["timestamp"]: e.get("transition") for e in state["data"]["scheduled"]}
            blend = {"mode": "blend", "blocks": 2, "curve": "linear"}
            assert listed == {0: None, 3: {"mode": "cut"}, 6: blend, 12: None}  # recache, the default, is not listed
            client.send("start", "go")
            assert (await client.reply_to("go"))["type"] == "ack"
            last = 9 + 12 * 4 + 11  # the last video frame of the block at 12
            await client.wait_event(lambda e: e["type"] == "progress" and e["data"]["current_start_frame"] >= 18, 30)
            for _ in range(200):
                if any(f.stamp is not None and f.stamp.frame >= last for f in client.frames):
                    break
                await asyncio.sleep(0.05)
            seen = {}
            for f in client.frames:
                if f.stamp is None or f.transition is None:
                    continue
                block = block_of(f.stamp.frame)
                if block in EXPECTED:
                    assert (f.stamp.prompt, f.transition.take, f.transition.weight) == EXPECTED[block], f.stamp
                    seen[block] = seen.get(block, 0) + 1
            assert set(seen) >= {0, 3, 6, 9, 12}, seen
        finally:
            await client.close()


def test_generate_renders_the_transitions_of_a_schedule_file(tmp_path: Path, capsys) -> None:
    import av

    from longlive_rtc.cli import main

    schedule = tmp_path / "schedule.json"
    schedule.write_text(
        json.dumps([{"timestamp": t, "prompt": p, **({"transition": x} if x else {})} for t, p, x in SCHEDULE])
    )
    out = tmp_path / "video.mp4"
    assert main(["generate", "--schedule", str(schedule), "--frames", "18", "--out", str(out), "--seed", "3"]) == 0
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]
    assert len(frames) == 1 + 4 * 17
    for index, frame in enumerate(frames):
        stamp, band = read_stamp(frame), read_transition_stamp(frame)
        assert stamp is not None and band is not None and stamp.frame == index
        assert (stamp.prompt, band.take, band.weight) == EXPECTED[block_of(index)], index

    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            [
                {"timestamp": 0, "prompt": "x"},
                {"timestamp": 3, "prompt": "y", "transition": {"mode": "blend", "blocks": 99}},
            ]
        )
    )
    assert main(["generate", "--schedule", str(bad), "--frames", "3", "--out", str(tmp_path / "x.mp4")]) == 2
    assert f"bad.json[1]: 'transition.blocks' must be in 1..{MAX_BLEND_BLOCKS}" in capsys.readouterr().err


async def test_a_session_created_over_http_takes_a_schedule_with_transitions() -> None:
    import aiohttp

    entries = [{"timestamp": t, "prompt": p, **({"transition": x} if x else {})} for t, p, x in SCHEDULE]
    async with Server(geometry=TALL) as server, aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/sessions", json={"schedule": entries}) as r:
            assert r.status == 201, await r.text()
            created = await r.json()
        async with http.get(f"{server.url}/sessions/{created['session']}") as r:
            listed = (await r.json())["state"]["scheduled"]
        assert [e.get("transition") for e in listed] == [
            None,
            {"mode": "cut"},
            {**SCHEDULE[2][2], "curve": "linear"},
            None,
        ]
        bad = [entries[0], {"timestamp": 3, "prompt": "y", "transition": {"mode": "cut", "curve": "slerp"}}]
        async with http.post(f"{server.url}/sessions", json={"schedule": bad}) as r:
            assert r.status == 400 and "unknown fields for a 'cut' transition" in (await r.json())["error"]["message"]


def test_a_repeated_prompt_is_a_no_op_unless_it_cuts_and_a_recache_ends_a_blend() -> None:
    blocks = stream_blocks(
        [
            (0, "a red fox", None),
            (3, "a red fox", None),  # the same prompt by recache: nothing happens
            (6, "a red fox", {"mode": "cut"}),  # a cut with the same prompt still cuts
            (9, "a blue sea", {"mode": "blend", "blocks": 4}),
            (15, "a green forest", None),  # a recache in the middle of the blend ends it at once
        ],
        7,
    )
    shown = [(read_stamp(b.frames[0]).prompt, read_transition_stamp(b.frames[0])) for b in blocks]  # type: ignore[union-attr]
    assert [(p, t.take, t.weight) for p, t in shown] == [  # type: ignore[union-attr]
        (0, 0, 255),
        (0, 0, 255),
        (1, 1, 255),
        (2, 1, 64),
        (2, 1, 128),
        (3, 1, 255),
        (3, 1, 255),
    ]
    assert [b.blend_weight for b in blocks] == [None, None, None, 0.25, 0.5, None, None]
