"""Configuration of the causal Wan DiT used by LongLive, with the 1.3B preset and tiny test presets."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class WanConfig:
    """Architecture and streaming constants of a causal Wan2.1 T2V DiT (LongLive v1.0 defaults).

    Lengths marked "frames" count latent frames; one latent frame is
    `(latent_height / patch_h) * (latent_width / patch_w)` tokens.
    """

    # transformer (Wan2.1-T2V-1.3B config.json + class defaults)
    patch_size: tuple[int, int, int] = (1, 2, 2)
    in_dim: int = 16
    out_dim: int = 16
    dim: int = 1536
    ffn_dim: int = 8960
    freq_dim: int = 256
    text_dim: int = 4096
    text_len: int = 512
    num_heads: int = 12
    num_layers: int = 30
    eps: float = 1e-6
    # RoPE: theta, table length of the official code (absolute positions beyond it need the slot mode),
    # and the precision it is applied in ("float64" as in v1.0, "float32" faster and nearly identical)
    rope_theta: float = 10000.0
    rope_max_frames: int = 1024
    rope_dtype: str = "float64"
    # LongLive streaming (configs/longlive_inference.yaml)
    num_frame_per_block: int = 3
    local_attn_size: int = 12
    sink_size: int = 3
    # latent geometry: 480x832 pixels -> 60x104 latents
    latent_height: int = 60
    latent_width: int = 104

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise ValueError("dim must be divisible by num_heads")
        if self.head_dim % 2:
            raise ValueError("head_dim must be even for RoPE")
        if not 0 <= self.sink_size < self.local_attn_size:
            raise ValueError("need 0 <= sink_size < local_attn_size")
        if self.rope_dtype not in ("float64", "float32"):
            raise ValueError("rope_dtype must be 'float64' or 'float32'")
        _, ph, pw = self.patch_size
        if self.latent_height % ph or self.latent_width % pw:
            raise ValueError("latent size must be divisible by the patch size")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def grid_size(self) -> tuple[int, int]:
        """Token grid (h, w) of one latent frame."""
        _, ph, pw = self.patch_size
        return self.latent_height // ph, self.latent_width // pw

    @property
    def frame_seq_len(self) -> int:
        """Tokens per latent frame (1560 at 832x480)."""
        h, w = self.grid_size
        return h * w

    def with_(self, **changes: object) -> WanConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]


def longlive_1_3b() -> WanConfig:
    """LongLive-1.3B: Wan2.1-T2V-1.3B, 832x480, blocks of 3 frames, window 12 with a 3-frame sink."""
    return WanConfig()


def tiny(num_layers: int = 2) -> WanConfig:
    """A tiny config for CPU tests: 6 tokens per frame, same streaming constants as LongLive."""
    return WanConfig(
        in_dim=4,
        out_dim=4,
        dim=32,
        ffn_dim=48,
        freq_dim=16,
        text_dim=24,
        text_len=8,
        num_heads=2,
        num_layers=num_layers,
        latent_height=4,
        latent_width=6,
    )


def tiny_small_window(num_layers: int = 2) -> WanConfig:
    """Tiny config with a shorter window (6 frames, sink 3) so rolls start after two blocks."""
    return tiny(num_layers).with_(local_attn_size=6)
