"""A machine-readable stamp in a band of the image: video frame index and prompt number.

The band spans the full width at the bottom of the frame: 32 black/white cells, each ``width // 32``
pixels wide and :data:`BAND_HEIGHT` tall, carrying 20 bits of frame index (mod 2^20), 8 bits of prompt
number (mod 256) and a 4-bit check. Cells this large survive VP8 and H.264 at streaming bitrates, so
tests and latency probes can read which frame and which prompt a received picture shows.
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


@dataclass(frozen=True)
class Stamp:
    """What a stamp carries."""

    frame: int  # video frame index, mod 2**20
    prompt: int  # prompt number (0 = initial prompt, +1 per switch), mod 256


def _check(payload: int) -> int:
    nibbles = [(payload >> shift) & 0xF for shift in range(0, FRAME_BITS + PROMPT_BITS, 4)]
    check = 0x5
    for nibble in nibbles:
        check = ((check << 1) | (check >> 3)) & 0xF
        check ^= nibble
    return check


def _bits(stamp: Stamp) -> list[int]:
    payload = (stamp.frame % (1 << FRAME_BITS)) | ((stamp.prompt % (1 << PROMPT_BITS)) << FRAME_BITS)
    word = payload | (_check(payload) << (FRAME_BITS + PROMPT_BITS))
    return [(word >> i) & 1 for i in range(CELLS)]


def draw_stamp(image: np.ndarray, stamp: Stamp) -> None:
    """Paint ``stamp`` into the bottom band of an RGB uint8 image ``[H, W, 3]`` in place."""
    height, width = image.shape[:2]
    cell = width // CELLS
    band = image[height - BAND_HEIGHT :]
    band[:] = BLACK
    for i, bit in enumerate(_bits(stamp)):
        if bit:
            band[:, i * cell : (i + 1) * cell] = WHITE


def read_stamp(image: np.ndarray) -> Stamp | None:
    """Decode the stamp of an RGB (``[H, W, 3]``) or luma (``[H, W]``) image; None if unreadable."""
    height, width = image.shape[:2]
    cell = width // CELLS
    if height < BAND_HEIGHT or cell < 4:
        return None
    band = image[height - BAND_HEIGHT :].astype(np.float32)
    if band.ndim == 3:
        band = band.mean(axis=2)
    rows = slice(BAND_HEIGHT // 4, BAND_HEIGHT - BAND_HEIGHT // 4)
    word = 0
    for i in range(CELLS):
        centre = band[rows, i * cell + cell // 4 : (i + 1) * cell - cell // 4]
        if centre.mean() > (BLACK + WHITE) / 2:
            word |= 1 << i
    payload = word & ((1 << (FRAME_BITS + PROMPT_BITS)) - 1)
    if word >> (FRAME_BITS + PROMPT_BITS) != _check(payload):
        return None
    return Stamp(frame=payload & ((1 << FRAME_BITS) - 1), prompt=payload >> FRAME_BITS)
