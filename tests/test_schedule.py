"""The prompt schedule: overwrite, remove, block round-up, past timestamps, capacity."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longlive_rtc.schedule import PromptSchedule, ScheduleFull, Transition, block_start_at_or_after


def applied_frames(schedule: PromptSchedule, blocks: int) -> dict[int, str]:
    """Walk ``blocks`` block starts as the engine does; frame -> prompt switched in."""
    out = {}
    for start in range(0, 3 * blocks, 3):
        entry = schedule.take_due(start)
        if entry:
            out[start] = entry.prompt
    return out


def test_round_up_to_block_start() -> None:
    assert [block_start_at_or_after(t) for t in range(8)] == [0, 3, 3, 3, 6, 6, 6, 9]
    schedule = PromptSchedule()
    for t, p in [(0, "a"), (1, "b"), (6, "c"), (7, "d")]:
        schedule.put(t, p)
    assert [e.frame for e in schedule.snapshot()] == [0, 3, 6, 9]
    assert applied_frames(schedule, 5) == {0: "a", 3: "b", 6: "c", 9: "d"}


def test_overwrite_at_same_timestamp() -> None:
    schedule = PromptSchedule()
    schedule.put(6, "first")
    schedule.put(6, "second")
    assert [(e.timestamp, e.prompt) for e in schedule.snapshot()] == [(6, "second")]
    assert len(schedule) == 1


def test_remove_and_remove_missing() -> None:
    schedule = PromptSchedule()
    schedule.put(3, "a")
    assert schedule.remove(3) is True
    assert schedule.remove(3) is False
    assert schedule.remove(99) is False
    assert schedule.snapshot() == []


def test_latest_timestamp_wins_within_one_block() -> None:
    schedule = PromptSchedule()
    schedule.put(4, "early")
    schedule.put(5, "late")
    assert applied_frames(schedule, 3) == {6: "late"}


def test_past_timestamps_while_running_apply_at_next_block() -> None:
    schedule = PromptSchedule()
    schedule.put(0, "a")
    schedule.put(30, "b")
    applied = applied_frames(schedule, 12)  # blocks 0..33 committed; next block starts at 36
    assert applied == {0: "a", 30: "b"}
    schedule.put(5, "late")  # in the past
    schedule.put(36, "exact")  # at the next block itself
    assert {e.timestamp: e.frame for e in schedule.snapshot()} == {0: 0, 5: 36, 30: 30, 36: 36}
    assert schedule.take_due(36).prompt == "exact"
    schedule.put(0, "rewrite the first")  # overwriting an applied prompt re-applies at the next block
    assert schedule.take_due(39).prompt == "rewrite the first"
    assert schedule.take_due(42) is None


def test_prompt_for_block_follows_the_timeline() -> None:
    schedule = PromptSchedule()
    schedule.put(0, "a")
    schedule.put(7, "b")
    assert schedule.prompt_for_block(0).prompt == "a"
    assert schedule.prompt_for_block(6).prompt == "a"
    assert schedule.prompt_for_block(9).prompt == "b"


def test_rewind_and_clear() -> None:
    schedule = PromptSchedule()
    schedule.put(0, "a")
    applied_frames(schedule, 10)
    schedule.put(2, "b")  # past: applies at 30
    assert schedule.snapshot()[1].frame == 30
    schedule.rewind()
    assert schedule.snapshot()[1].frame == 3
    schedule.clear()
    assert schedule.snapshot() == [] and not schedule.has_initial_prompt()
    schedule.put(1, "c")
    assert schedule.snapshot()[0].frame == 3


def test_a_thousand_prompts() -> None:
    schedule = PromptSchedule()
    for t in range(1000):
        schedule.put(t, f"prompt {t}")
    assert len(schedule) == 1000
    applied = applied_frames(schedule, 340)
    assert len(applied) == 334  # block starts 0, 3, ..., 999
    assert applied[999] == "prompt 999" and applied[3] == "prompt 3" and applied[6] == "prompt 6"
    assert [e.timestamp for e in schedule.snapshot()] == list(range(1000))


def test_capacity_limit() -> None:
    schedule = PromptSchedule(max_prompts=3)
    for t in range(3):
        schedule.put(t, "x")
    schedule.put(2, "overwrite still fine")
    with pytest.raises(ScheduleFull):
        schedule.put(3, "one too many")


def test_snapshot_is_cached_until_a_change_and_callers_get_a_copy() -> None:
    schedule = PromptSchedule()
    schedule.put(6, "b")
    schedule.put(0, "a")
    version = schedule.version
    first = schedule.snapshot()
    first.clear()  # a caller's copy: the schedule is unaffected
    assert [e.timestamp for e in schedule.snapshot()] == [0, 6]
    schedule.take_due(0)  # a block start is no change of the entries
    assert schedule.version == version
    schedule.put(3, "c")
    assert schedule.version > version
    assert [e.timestamp for e in schedule.snapshot()] == [0, 3, 6]


def test_discard_removes_only_the_same_prompt() -> None:
    schedule = PromptSchedule()
    entry = schedule.put(3, "bad")
    schedule.put(3, "replaced meanwhile")
    assert schedule.discard(entry) is False and len(schedule) == 1
    assert schedule.discard(schedule.put(3, "bad")) is True
    assert schedule.snapshot() == [] and schedule.take_due(3) is None


def test_holds_only_the_entry_still_scheduled() -> None:
    schedule = PromptSchedule()
    entry = schedule.put(3, "a")
    assert schedule.holds(entry)
    replaced = schedule.put(3, "a", Transition("blend", 2))
    assert schedule.holds(replaced) and not schedule.holds(entry), "overwritten with another transition"
    kept = schedule.put(6, "b")
    schedule.remove(6)
    assert not schedule.holds(kept)


class NaiveSchedule:
    """The schedule's rules, by scanning every entry (the reference for the indexed one)."""

    def __init__(self) -> None:
        self.entries: dict[int, tuple[str, int]] = {}
        self.next_block = 0

    def put(self, t: int, prompt: str) -> None:
        self.entries[t] = (prompt, max(block_start_at_or_after(t), self.next_block))

    def take_due(self, start: int) -> str | None:
        self.next_block = start + 3
        due = [(t, p) for t, (p, f) in self.entries.items() if f == start]
        return max(due)[1] if due else None

    def prompt_for_block(self, start: int) -> str | None:
        applied = [(f, t, p) for t, (p, f) in self.entries.items() if f <= start]
        return max(applied)[2] if applied else None

    def rewind(self) -> None:
        self.next_block = 0
        self.entries = {t: (p, block_start_at_or_after(t)) for t, (p, _) in self.entries.items()}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["put", "remove", "take", "rewind", "for"]), st.integers(0, 40)),
        max_size=60,
    )
)
def test_the_index_agrees_with_a_scan(ops: list[tuple[str, int]]) -> None:
    schedule, naive, block = PromptSchedule(), NaiveSchedule(), 0
    for i, (op, t) in enumerate(ops):
        if op == "put":
            schedule.put(t, f"p{i}")
            naive.put(t, f"p{i}")
        elif op == "remove":
            assert schedule.remove(t) == (naive.entries.pop(t, None) is not None)
        elif op == "take":
            entry = schedule.take_due(block)
            assert (entry.prompt if entry else None) == naive.take_due(block)
            block += 3
        elif op == "rewind":
            schedule.rewind()
            naive.rewind()
            block = 0
        else:
            entry = schedule.prompt_for_block(3 * (t // 3))
            assert (entry.prompt if entry else None) == naive.prompt_for_block(3 * (t // 3))
        assert [(e.timestamp, e.prompt, e.frame) for e in schedule.snapshot()] == sorted(
            (t, p, f) for t, (p, f) in naive.entries.items()
        )


def test_block_starts_do_not_scan_a_full_schedule() -> None:
    schedule = PromptSchedule()
    for t in range(1000):
        schedule.put(3 * t, f"prompt {t}")
    began = time.perf_counter()
    for start in range(0, 3 * 20_000, 3):
        schedule.take_due(start)
        schedule.prompt_for_block(start)
    assert time.perf_counter() - began < 1.0  # a scan per call took ~3 s; the index takes ~20 ms


def test_block_starts_of_a_stopped_run_are_ignored() -> None:
    schedule = PromptSchedule()
    schedule.put(0, "a")
    epoch = schedule.rewind()  # a run begins
    assert schedule.take_due(0, epoch).prompt == "a"
    schedule.rewind()  # stop: the worker may still be inside a block of the old run
    assert schedule.take_due(3, epoch) is None  # not committed: late puts are not pushed past block 3
    assert schedule.put(2, "b").frame == 3
    schedule.clear()
    assert schedule.take_due(0, epoch) is None
