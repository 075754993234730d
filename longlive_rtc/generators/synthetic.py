"""The synthetic generator: cheap, deterministic procedural video from (prompt, seed).

It stands in for LongLive wherever there is no GPU or no weights, with the same geometry and block
behaviour: colours, shapes and motion derived from the prompt text, a cross-fade over the block where
the prompt switches, the prompt drawn small in a corner and a machine-readable :mod:`stamp` band.
"""

from __future__ import annotations

import colorsys
import hashlib
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .base import CONTENT_FPS, Geometry
from .stamp import BAND_HEIGHT, Stamp, draw_stamp

#: Hues (0..1) for colour words, so "a red fox" looks red.
COLOUR_WORDS = {
    "red": 0.0, "fire": 0.03, "orange": 0.07, "sunset": 0.06, "gold": 0.12, "yellow": 0.15,
    "desert": 0.1, "green": 0.33, "forest": 0.3, "grass": 0.28, "teal": 0.47, "cyan": 0.5,
    "ocean": 0.56, "sea": 0.55, "water": 0.55, "sky": 0.58, "blue": 0.62, "night": 0.66,
    "purple": 0.78, "violet": 0.75, "pink": 0.92, "magenta": 0.85,
}  # fmt: skip

TEXT_MAX_CHARS = 72


@dataclass(frozen=True)
class SyntheticPrompt:
    """The synthetic generator's prompt embedding: the text and its digest."""

    text: str
    digest: bytes


@dataclass(frozen=True)
class Disc:
    centre: tuple[float, float]
    amplitude: tuple[float, float]
    frequency: tuple[float, float]
    phase: tuple[float, float]
    colour: np.ndarray
    mask: np.ndarray  # [2r, 2r] bool


class Scene:
    """Everything needed to render one prompt's frames, pre-computed once per (prompt, seed)."""

    def __init__(self, prompt: SyntheticPrompt, seed: int, geometry: Geometry) -> None:
        mix = hashlib.blake2b(prompt.digest + seed.to_bytes(8, "little"), digest_size=8).digest()
        rng = np.random.default_rng(int.from_bytes(mix, "little"))
        width, height = geometry.width, geometry.height - BAND_HEIGHT
        hue = _prompt_hue(prompt.text, rng)
        palette = [
            _rgb((hue + offset) % 1.0, sat, val)
            for offset, sat, val in [
                (0.0, 0.75, 0.85),
                (rng.uniform(0.08, 0.2), 0.6, 0.35),
                (rng.uniform(0.4, 0.6), 0.8, 0.95),
            ]
        ]
        self.background = _background(width, height, palette, rng)
        self.speed = int(rng.integers(2, 9)) * (1 if rng.random() < 0.5 else -1)
        self.discs = [_disc(width, height, rng) for _ in range(int(rng.integers(3, 7)))]
        self.caption = _caption(prompt.text, width)

    def render(self, index: int, out: np.ndarray) -> None:
        """Draw video frame ``index`` into ``out`` (the picture area, ``[H - band, W, 3]``)."""
        width = out.shape[1]
        shift = (index * self.speed) % width
        out[:, : width - shift] = self.background[:, shift:]
        out[:, width - shift :] = self.background[:, :shift]
        seconds = index / CONTENT_FPS
        for disc in self.discs:
            x = disc.centre[0] + disc.amplitude[0] * math.sin(disc.frequency[0] * seconds + disc.phase[0])
            y = disc.centre[1] + disc.amplitude[1] * math.sin(disc.frequency[1] * seconds + disc.phase[1])
            _paint(out, disc.mask, disc.colour, int(x), int(y))
        h, w = self.caption.shape[:2]
        out[8 : 8 + h, 8 : 8 + w] = self.caption


class SyntheticGenerator:
    """Procedural video with LongLive's geometry; >= 150 video frames/s on one core at 832x480."""

    name = "synthetic"

    def __init__(self, geometry: Geometry | None = None) -> None:
        self.geometry = geometry or Geometry()
        self._scene: Scene | None = None
        self._fading_from: Scene | None = None
        self._seed = 0
        self._block_start = 0
        self._video_frame = 0
        self._prompt_number = 0

    def check_prompt(self, prompt: str) -> None:
        """Any non-empty text that encodes to UTF-8 (the digest is of its UTF-8 bytes)."""
        if not prompt.strip():
            raise ValueError("the prompt is empty")
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"the prompt is not valid Unicode text ({exc.reason} at index {exc.start})") from None

    def encode_prompt(self, prompt: str) -> SyntheticPrompt:
        return SyntheticPrompt(prompt, hashlib.blake2b(prompt.encode("utf-8"), digest_size=16).digest())

    def begin(self, seed: int, prompt: SyntheticPrompt) -> None:
        self._seed = seed
        self._scene = Scene(prompt, seed, self.geometry)
        self._fading_from = None
        self._block_start = self._video_frame = self._prompt_number = 0

    def switch_prompt(self, prompt: SyntheticPrompt) -> None:
        if self._scene is None:
            raise RuntimeError("switch_prompt before begin")
        self._fading_from = self._scene
        self._scene = Scene(prompt, self._seed, self.geometry)
        self._prompt_number += 1

    def next_block(self) -> np.ndarray:
        if self._scene is None:
            raise RuntimeError("next_block before begin")
        g = self.geometry
        count = g.video_frames_in_block(self._block_start)
        frames = np.empty((count, g.height, g.width, 3), dtype=np.uint8)
        picture_rows = g.height - BAND_HEIGHT
        scratch = np.empty((picture_rows, g.width, 3), dtype=np.uint8) if self._fading_from else None
        for k in range(count):
            index = self._video_frame + k
            picture = frames[k, :picture_rows]
            self._scene.render(index, picture)
            if self._fading_from is not None and scratch is not None:
                self._fading_from.render(index, scratch)
                _blend(scratch, picture, weight=(k + 1) / count)
            draw_stamp(frames[k], Stamp(index, self._prompt_number))
        self._fading_from = None
        self._block_start += g.frames_per_block
        self._video_frame += count
        return frames

    def reset(self) -> None:
        self._scene = self._fading_from = None
        self._block_start = self._video_frame = self._prompt_number = 0


def _prompt_hue(text: str, rng: np.random.Generator) -> float:
    words = [w.strip(".,;:!?") for w in text.lower().split()]
    for word in words:
        if word in COLOUR_WORDS:
            return COLOUR_WORDS[word]
    return float(rng.random())


def _rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue, saturation, value), dtype=np.float32) * 255.0


def _background(width: int, height: int, palette: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """A vertical gradient crossed by waves that repeat exactly across the width (so it can scroll)."""
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    x = np.arange(width, dtype=np.float32)[None, :, None]
    gradient = palette[0] * (1.0 - y) + palette[1] * y
    cycles, tilt = int(rng.integers(2, 6)), float(rng.uniform(-6.0, 6.0))
    wave = 0.5 + 0.5 * np.sin(2.0 * np.pi * cycles * x / width + tilt * y)
    image = gradient * (1.0 - 0.35 * wave) + palette[2] * (0.35 * wave)
    return np.clip(image, 0, 255).astype(np.uint8)


def _disc(width: int, height: int, rng: np.random.Generator) -> Disc:
    radius = int(rng.integers(height // 16, height // 6))
    yy, xx = np.mgrid[-radius:radius, -radius:radius]
    return Disc(
        centre=(float(rng.uniform(0.2, 0.8) * width), float(rng.uniform(0.25, 0.75) * height)),
        amplitude=(float(rng.uniform(0.05, 0.3) * width), float(rng.uniform(0.05, 0.25) * height)),
        frequency=(float(rng.uniform(0.3, 1.5)), float(rng.uniform(0.3, 1.5))),
        phase=(float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, 2 * np.pi))),
        colour=_rgb(float(rng.random()), 0.7, 1.0).astype(np.uint8),
        mask=(xx * xx + yy * yy) < radius * radius,
    )


def _paint(out: np.ndarray, mask: np.ndarray, colour: np.ndarray, x: int, y: int) -> None:
    """Paint a mask centred at (x, y), clipped to the image."""
    size = mask.shape[0]
    top, left = y - size // 2, x - size // 2
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + size, out.shape[0]), min(left + size, out.shape[1])
    if y0 >= y1 or x0 >= x1:
        return
    out[y0:y1, x0:x1][mask[y0 - top : y1 - top, x0 - left : x1 - left]] = colour


def _caption(text: str, width: int) -> np.ndarray:
    """The prompt drawn small, white on a dark box, as an RGB patch."""
    shown = text if len(text) <= TEXT_MAX_CHARS else text[: TEXT_MAX_CHARS - 1] + "…"
    font = ImageFont.load_default(size=13)
    left, top, right, bottom = font.getbbox(shown)
    box = Image.new("RGB", (min(right - left + 12, width - 16), bottom - top + 8), (16, 16, 16))
    ImageDraw.Draw(box).text((6 - left, 4 - top), shown, font=font, fill=(240, 240, 240))
    return np.asarray(box, dtype=np.uint8)


def _blend(source: np.ndarray, target: np.ndarray, weight: float) -> None:
    """target = source * (1 - weight) + target * weight, in place, integer arithmetic."""
    w = int(round(weight * 256))
    if w >= 256:
        return
    mixed = source.astype(np.uint16) * (256 - w) + target.astype(np.uint16) * w
    np.right_shift(mixed, 8, out=mixed)
    target[:] = mixed
