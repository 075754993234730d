"""Full-frame text cards (the idle picture shown before a stream starts)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def render_card(width: int, height: int, text: str, title: str = "longlive-rtc") -> np.ndarray:
    """A dark card with a title and one line of text, as uint8 RGB ``[H, W, 3]``."""
    image = Image.new("RGB", (width, height), (12, 14, 20))
    draw = ImageDraw.Draw(image)
    title_font = ImageFont.load_default(size=max(12, height // 12))
    text_font = ImageFont.load_default(size=max(10, height // 32))
    draw.text((width / 2, height * 0.42), title, font=title_font, fill=(235, 235, 240), anchor="mm")
    draw.text((width / 2, height * 0.58), text, font=text_font, fill=(150, 160, 175), anchor="mm")
    return np.asarray(image, dtype=np.uint8).copy()
