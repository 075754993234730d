"""The synthetic generator: cheap, deterministic procedural video from (prompt, seed).

It stands in for LongLive wherever there is no GPU or no weights, with the same geometry and block
behaviour: colours, shapes and motion derived from the prompt text, the prompt drawn small in a corner
and a machine-readable :mod:`stamp` band. Transitions show: a recache (``switch_prompt``) cross-fades
over the block where the prompt switches; a cut shows the new scene at once, its motion restarted as if
the stream had begun there (the frame counter goes on); a blend shows the scenes mixed at the weights of
its conditioning (a :class:`SyntheticMix`). The transition band carries the cut count and blend weight.
"""

from __future__ import annotations

import colorsys
import hashlib
import math
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .base import CONTENT_FPS, Geometry
from .stamp import TRANSITION_BAND_MIN_HEIGHT, Stamp, TransitionStamp, draw_stamp, draw_transition_stamp, stamp_rows

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
class SyntheticMix:
    """A blend's conditioning: prompts with weights summing to 1, the newest last; ``weight`` is its."""

    parts: tuple[tuple[SyntheticPrompt, float], ...]

    @property
    def weight(self) -> float:
        return self.parts[-1][1]


SyntheticEmbedding = SyntheticPrompt | SyntheticMix


def _parts(prompt: SyntheticEmbedding) -> tuple[tuple[SyntheticPrompt, float], ...]:
    return prompt.parts if isinstance(prompt, SyntheticMix) else ((prompt, 1.0),)


def _newest(prompt: SyntheticEmbedding) -> SyntheticPrompt:
    return _parts(prompt)[-1][0]


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
        width, height = geometry.width, geometry.height - stamp_rows(geometry.height)
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

    def __init__(self, geometry: Geometry | None = None, block_ms: float = 0.0, switch_ms: float = 0.0) -> None:
        """``block_ms``: each block takes at least this long, emulating a model's block time (LongLive on one
        H200: about 310 ms with the TAE decoder, 420 ms with the Wan VAE); ``switch_ms``: a recache takes this
        much more (LongLive: about 100 ms)."""
        self.geometry = geometry or Geometry()
        self.block_ms = block_ms
        self.switch_ms = switch_ms
        self._look: SyntheticEmbedding | None = None  # the conditioning in effect
        self._fading_from: SyntheticEmbedding | None = None  # a recache's previous conditioning, for one block
        self._scenes: dict[bytes, Scene] = {}
        self._seed = 0
        self._block_start = 0
        self._video_frame = 0
        self._origin = 0  # video frame where the current take began (0, or the first frame after a cut)
        self._prompt_number = 0
        self._takes = 0

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

    def mix_prompts(
        self, a: SyntheticEmbedding, b: SyntheticEmbedding, weight: float, curve: str
    ) -> SyntheticEmbedding:
        """``a`` and ``b`` at ``weight`` (pictures mix linearly whatever the curve): a :class:`SyntheticMix`."""
        if weight <= 0.0:
            return a
        if weight >= 1.0:
            return b
        mixed: dict[bytes, tuple[SyntheticPrompt, float]] = {}
        scaled = [(p, w * (1.0 - weight)) for p, w in _parts(a)] + [(p, w * weight) for p, w in _parts(b)]
        for part, scale in scaled:
            mixed[part.digest] = (part, mixed.get(part.digest, (part, 0.0))[1] + scale)
        newest = mixed.pop(_newest(b).digest)
        return SyntheticMix((*mixed.values(), newest))

    def begin(self, seed: int, prompt: SyntheticEmbedding) -> None:
        self._seed = seed
        self._scenes = {}
        self._fading_from = None
        self._block_start = self._video_frame = self._origin = self._prompt_number = self._takes = 0
        self._condition(prompt)

    def switch_prompt(self, prompt: SyntheticEmbedding) -> None:
        self._require_begun("switch_prompt")
        self._fading_from = self._look
        self._prompt_number += 1
        self._condition(prompt)
        time.sleep(self.switch_ms / 1000)  # the emulated recache

    def cut(self, prompt: SyntheticEmbedding) -> None:
        self._require_begun("cut")
        self._fading_from = None
        self._origin = self._video_frame
        self._prompt_number += 1
        self._takes += 1
        self._condition(prompt)

    def set_prompt(self, prompt: SyntheticEmbedding) -> None:
        """A blend's step: the prompt number goes up when the newest prompt of the conditioning changes."""
        look = self._require_begun("set_prompt")
        if _newest(prompt).digest != _newest(look).digest:
            self._prompt_number += 1
        self._fading_from = None
        self._condition(prompt)

    def _require_begun(self, what: str) -> SyntheticEmbedding:
        if self._look is None:
            raise RuntimeError(f"{what} before begin")
        return self._look

    def _condition(self, prompt: SyntheticEmbedding) -> None:
        self._look = prompt
        keep = {p.digest for p, _ in _parts(prompt)} | {p.digest for p, _ in _parts(self._fading_from or prompt)}
        self._scenes = {d: scene for d, scene in self._scenes.items() if d in keep}
        for part, _ in (*_parts(prompt), *_parts(self._fading_from or prompt)):
            if part.digest not in self._scenes:
                self._scenes[part.digest] = Scene(part, self._seed, self.geometry)

    def _render(self, look: SyntheticEmbedding, index: int, out: np.ndarray, scratch: np.ndarray) -> None:
        """Draw ``look`` (its scenes mixed by weight) at take-relative frame ``index`` into ``out``."""
        total = 0.0
        for part, weight in _parts(look):
            scene = self._scenes[part.digest]
            if total == 0.0:
                scene.render(index, out)
            else:
                scene.render(index, scratch)
                _blend(scratch, out, weight=1.0 - weight / (total + weight))
            total += weight

    def next_block(self) -> np.ndarray:
        started = time.monotonic()
        look = self._require_begun("next_block")
        g = self.geometry
        count = g.video_frames_in_block(self._block_start)
        frames = np.empty((count, g.height, g.width, 3), dtype=np.uint8)
        picture_rows = g.height - stamp_rows(g.height)
        scratch = np.empty((picture_rows, g.width, 3), dtype=np.uint8)
        fading = np.empty_like(scratch) if self._fading_from is not None else None
        weight = round(255 * (look.weight if isinstance(look, SyntheticMix) else 1.0))
        for k in range(count):
            index = self._video_frame + k
            picture = frames[k, :picture_rows]
            self._render(look, index - self._origin, picture, scratch)
            if self._fading_from is not None and fading is not None:
                self._render(self._fading_from, index - self._origin, fading, scratch)
                _blend(fading, picture, weight=(k + 1) / count)
            draw_stamp(frames[k], Stamp(index, self._prompt_number))
            if g.height >= TRANSITION_BAND_MIN_HEIGHT:
                draw_transition_stamp(frames[k], TransitionStamp(self._takes, weight))
        self._fading_from = None
        self._block_start += g.frames_per_block
        self._video_frame += count
        time.sleep(max(0.0, started + self.block_ms / 1000 - time.monotonic()))  # the emulated block time
        return frames

    def reset(self) -> None:
        self._look = self._fading_from = None
        self._scenes = {}
        self._block_start = self._video_frame = self._origin = self._prompt_number = self._takes = 0


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
