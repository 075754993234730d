"""A machine-readable stamp in a band of the image: video frame index and prompt number.

The band spans the full width at the bottom of the frame: 32 black/white cells, each ``width // 32``
pixels wide and :data:`BAND_HEIGHT` tall, carrying 20 bits of frame index (mod 2^20), 8 bits of prompt
number (mod 256) and a 4-bit check. Cells this large survive VP8 and H.264 at streaming bitrates, so
tests and latency probes can read which frame and which prompt a received picture shows.

Frames at least :data:`TRANSITION_BAND_MIN_HEIGHT` rows tall carry a second band of the same cells
right above it, the :class:`TransitionStamp`: 8 bits of cut count (mod 256), 8 bits of blend weight
(``round(255 w)``, 255 outside a blend), 12 zero bits and a 4-bit check of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BAND_HEIGHT = 32
CELLS = 32
FRAME_BITS = 20
PROMPT_BITS = 8
CHECK_BITS = 4
BLACK, WHITE = 16, 235
TRANSITION_BAND_MIN_HEIGHT = 160  # frames this tall (or taller) carry the transition band
TAKE_BITS = WEIGHT_BITS = 8


@dataclass(frozen=True)
class Stamp:
    """What a stamp carries."""

    frame: int  # video frame index, mod 2**20
    prompt: int  # prompt number (0 = initial prompt, +1 per switch), mod 256


@dataclass(frozen=True)
class TransitionStamp:
    """What the transition band carries."""

    take: int  # cuts since the stream began, mod 256
    weight: int  # blend weight of the newest prompt, 0..255 (255: fully in effect, no blend under way)


def stamp_rows(height: int) -> int:
    """Rows at the bottom of a frame ``height`` rows tall taken by the stamp bands."""
    return 2 * BAND_HEIGHT if height >= TRANSITION_BAND_MIN_HEIGHT else BAND_HEIGHT


def _check(payload: int, seed: int = 0x5) -> int:
    nibbles = [(payload >> shift) & 0xF for shift in range(0, FRAME_BITS + PROMPT_BITS, 4)]
    check = seed
    for nibble in nibbles:
        check = ((check << 1) | (check >> 3)) & 0xF
        check ^= nibble
    return check


def _bits(stamp: Stamp) -> list[int]:
    payload = (stamp.frame % (1 << FRAME_BITS)) | ((stamp.prompt % (1 << PROMPT_BITS)) << FRAME_BITS)
    return _word(payload, 0x5)


_TRANSITION_CHECK_SEED = 0xA


def _word(payload: int, seed: int) -> list[int]:
    word = payload | (_check(payload, seed) << (FRAME_BITS + PROMPT_BITS))
    return [(word >> i) & 1 for i in range(CELLS)]


def _paint_band(band: np.ndarray, bits: list[int]) -> None:
    cell = band.shape[1] // CELLS
    band[:] = BLACK
    for i, bit in enumerate(bits):
        if bit:
            band[:, i * cell : (i + 1) * cell] = WHITE


def draw_stamp(image: np.ndarray, stamp: Stamp) -> None:
    """Paint ``stamp`` into the bottom band of an RGB uint8 image ``[H, W, 3]`` in place."""
    _paint_band(image[image.shape[0] - BAND_HEIGHT :], _bits(stamp))


def draw_transition_stamp(image: np.ndarray, stamp: TransitionStamp) -> None:
    """Paint ``stamp`` into the band above the stamp's (frames of at least TRANSITION_BAND_MIN_HEIGHT rows)."""
    height = image.shape[0]
    if height < TRANSITION_BAND_MIN_HEIGHT:
        raise ValueError(f"a frame of {height} rows has no transition band")
    payload = (stamp.take % (1 << TAKE_BITS)) | ((stamp.weight & 0xFF) << TAKE_BITS)
    _paint_band(image[height - 2 * BAND_HEIGHT : height - BAND_HEIGHT], _word(payload, _TRANSITION_CHECK_SEED))


def read_transition_stamp(image: np.ndarray) -> TransitionStamp | None:
    """Decode the transition band of an RGB or luma image; None if it has none or it is unreadable."""
    height = image.shape[0]
    if height < TRANSITION_BAND_MIN_HEIGHT:
        return None
    payload = _read_band(image[height - 2 * BAND_HEIGHT : height - BAND_HEIGHT], _TRANSITION_CHECK_SEED)
    if payload is None or payload >> (TAKE_BITS + WEIGHT_BITS):
        return None
    return TransitionStamp(take=payload & 0xFF, weight=(payload >> TAKE_BITS) & 0xFF)


def read_stamp(image: np.ndarray) -> Stamp | None:
    """Decode the stamp of an RGB (``[H, W, 3]``) or luma (``[H, W]``) image; None if unreadable."""
    height = image.shape[0]
    if height < BAND_HEIGHT:
        return None
    payload = _read_band(image[height - BAND_HEIGHT :], 0x5)
    if payload is None:
        return None
    return Stamp(frame=payload & ((1 << FRAME_BITS) - 1), prompt=payload >> FRAME_BITS)


def _read_band(image: np.ndarray, seed: int) -> int | None:
    """The 28-bit payload of one band of cells, None when the cells are too small or the check fails."""
    cell = image.shape[1] // CELLS
    if cell < 4:
        return None
    band = image.astype(np.float32)
    if band.ndim == 3:
        band = band.mean(axis=2)
    rows = slice(BAND_HEIGHT // 4, BAND_HEIGHT - BAND_HEIGHT // 4)
    word = 0
    for i in range(CELLS):
        centre = band[rows, i * cell + cell // 4 : (i + 1) * cell - cell // 4]
        if centre.mean() > (BLACK + WHITE) / 2:
            word |= 1 << i
    payload = word & ((1 << (FRAME_BITS + PROMPT_BITS)) - 1)
    if word >> (FRAME_BITS + PROMPT_BITS) != _check(payload, seed):
        return None
    return payload
