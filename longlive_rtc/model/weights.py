"""Everything from a weights directory to a ready streaming LongLive: generator, text encoder, decoder.

`build_longlive(DIR)` checks that the files of the official layout (see `download.py`) are present, naming
each missing one and the command that fetches it, then loads:
  - the generator: `longlive_base.pt` into CausalWanModel (strict), LoRA `lora.pt` merged in float32, cast;
  - the text encoder: umT5-XXL + tokenizer, on the GPU or on the CPU (`text_encoder_device="cpu"`);
  - the decoder: the Wan VAE (`decoder="wan"`) or the TAE (`decoder="tae"`), streaming block by block.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoint import load_strict, read_dit_safetensors, read_generator_state
from .config import WanConfig, longlive_1_3b
from .decode import DECODER_KINDS, DecoderKind, StreamingDecoder
from .dit import CausalWanModel
from .download import FILES_BY_ROLE, download_command
from .lora import LORA_ALPHA, LORA_RANK, lora_targets, merge_lora, read_lora_state
from .pipeline import StreamingPipeline
from .t5 import T5Config
from .tae import TAEConfig, load_tae
from .text_encoder import TextEncoder, load_text_encoder
from .vae import VAEConfig, load_wan_vae


class MissingWeightsError(FileNotFoundError):
    """Some weight files are not in the weights directory."""


@dataclass(frozen=True)
class WeightPaths:
    """Where each file lives under a weights directory laid out as the official download."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser())

    def _path(self, role: str) -> Path:
        return FILES_BY_ROLE[role].path(self.root)

    @property
    def vae(self) -> Path:
        return self._path("vae")

    @property
    def t5(self) -> Path:
        return self._path("t5")

    @property
    def tokenizer_dir(self) -> Path:
        return self._path("tokenizer").parent

    @property
    def base(self) -> Path:
        return self._path("base")

    @property
    def lora(self) -> Path:
        return self._path("lora")

    @property
    def tae(self) -> Path:
        return self._path("tae")

    def required(self, decoder: DecoderKind = "wan", lora: bool = True) -> list[Path]:
        """The files `build_longlive` reads with these options."""
        roles = ["base", *(["lora"] if lora else []), "t5", "tokenizer", "vae" if decoder == "wan" else "tae"]
        return [self._path(role) for role in roles]

    def missing(self, decoder: DecoderKind = "wan", lora: bool = True) -> list[Path]:
        return [p for p in self.required(decoder, lora) if not p.is_file()]

    def check(self, decoder: DecoderKind = "wan", lora: bool = True) -> None:
        """Raise MissingWeightsError naming every missing file and how to fetch them."""
        missing = self.missing(decoder, lora)
        if missing:
            listing = "\n".join(f"  - {p}" for p in missing)
            raise MissingWeightsError(
                f"{len(missing)} weight file(s) missing under {self.root}:\n{listing}\n"
                f"Fetch them with: {download_command(self.root)}"
            )


@dataclass(frozen=True)
class ModelConfigs:
    """Architectures of the parts (LongLive-1.3B by default; tests pass tiny ones)."""

    dit: WanConfig = field(default_factory=longlive_1_3b)
    t5: T5Config = field(default_factory=T5Config.umt5_xxl)
    vae: VAEConfig = field(default_factory=VAEConfig.wan2_1)
    tae: TAEConfig = field(default_factory=TAEConfig.taew2_1)


def load_generator(
    base_path: str | Path,
    lora_path: str | Path | None = None,
    *,
    config: WanConfig | None = None,
    device: torch.device | str = "cuda",
    dtype: torch.dtype = torch.bfloat16,
    use_ema: bool = False,
    lora_rank: int = LORA_RANK,
    lora_alpha: float = LORA_ALPHA,
) -> CausalWanModel:
    """CausalWanModel with `longlive_base.pt` loaded strictly and the LoRA (if given) merged.

    The model is built on the meta device (no random init) and takes the file's tensors; the merge runs in
    float32 on `device` and is cast to `dtype`; everything ends on `device` in `dtype`.
    """
    with torch.device("meta"):
        model = CausalWanModel(config or longlive_1_3b())
    state = read_generator_state(base_path, use_ema=use_ema)
    if lora_path is not None:
        lora = read_lora_state(lora_path)
        targets = lora_targets(model)
        state = merge_lora(state, lora, targets, rank=lora_rank, alpha=lora_alpha, device=device, dtype=dtype)
    load_strict(model, state, f"generator {base_path}", assign=True)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def load_wan_dit(model: CausalWanModel, path: str | Path) -> CausalWanModel:
    """Optional: the original Wan2.1 DiT weights (`diffusion_pytorch_model.safetensors`), strict."""
    return load_strict(model, read_dit_safetensors(path), f"Wan DiT {path}")


def load_decoder(
    kind: DecoderKind,
    path: str | Path,
    *,
    device: torch.device | str = "cuda",
    dtype: torch.dtype = torch.bfloat16,
    configs: ModelConfigs | None = None,
) -> StreamingDecoder:
    """A StreamingDecoder over the Wan VAE (`wan`, `Wan2.1_VAE.pth`) or the TAE (`tae`, `taew2_1.pth`)."""
    configs = configs or ModelConfigs()
    if kind == "wan":
        return StreamingDecoder(load_wan_vae(path, device=device, dtype=dtype, cfg=configs.vae))
    if kind == "tae":
        return StreamingDecoder(load_tae(path, device=device, dtype=dtype, cfg=configs.tae))
    raise ValueError(f"decoder must be one of {DECODER_KINDS}, not {kind!r}")


@dataclass
class LongLive:
    """The loaded parts of a streaming LongLive: prompt -> context, context -> latent blocks, -> frames."""

    pipeline: StreamingPipeline
    text_encoder: TextEncoder
    decoder: StreamingDecoder
    weights: WeightPaths


def build_longlive(
    weights_dir: str | Path,
    *,
    device: torch.device | str = "cuda",
    dtype: torch.dtype = torch.bfloat16,
    decoder: DecoderKind = "wan",
    text_encoder_device: torch.device | str | None = None,
    lora: bool = True,
    use_ema: bool = False,
    global_sink: bool = True,
    configs: ModelConfigs | None = None,
) -> LongLive:
    """Load every part from `weights_dir` (official layout); clear error first if any file is missing.

    `text_encoder_device="cpu"` keeps the 11 GB umT5 encoder in host memory (slow encodes, moved results).
    """
    if decoder not in DECODER_KINDS:
        raise ValueError(f"decoder must be one of {DECODER_KINDS}, not {decoder!r}")
    configs = configs or ModelConfigs()
    paths = WeightPaths(Path(weights_dir))
    paths.check(decoder, lora)
    generator = load_generator(
        paths.base, paths.lora if lora else None, config=configs.dit, device=device, dtype=dtype, use_ema=use_ema
    )
    text_encoder = load_text_encoder(
        paths.t5,
        paths.tokenizer_dir,
        device=text_encoder_device or device,
        dtype=dtype,
        output_device=device,
        cfg=configs.t5,
        text_len=configs.dit.text_len,
    )
    frames = load_decoder(
        decoder, paths.vae if decoder == "wan" else paths.tae, device=device, dtype=dtype, configs=configs
    )
    return LongLive(StreamingPipeline(generator, global_sink=global_sink), text_encoder, frames, paths)
