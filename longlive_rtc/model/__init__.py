"""LongLive re-implementation in torch: causal Wan DiT, KV cache, sampler, streaming pipeline, IO.

Nothing here imports WebRTC or HTTP code.
"""

from .attention import attention, backend_for
from .checkpoint import CheckpointError
from .config import WanConfig, longlive_1_3b, tiny, tiny_small_window
from .decode import DECODER_KINDS, StreamingDecoder
from .dit import CausalWanModel, CrossAttnCache
from .download import WEIGHT_FILES, DownloadError, download_weights
from .kv_cache import CachePlan, KVCache
from .noise import NoiseSource, OfficialNoise, SeededNoise
from .pipeline import StreamingPipeline
from .rope import RotaryEmbedding, apply_rope
from .sampler import DENOISING_STEPS, DenoisingSampler, FlowMatchSchedule, warped_timesteps
from .text_encoder import TextEncoder, load_text_encoder
from .weights import LongLive, MissingWeightsError, WeightPaths, build_longlive, load_decoder, load_generator

__all__ = [
    "DECODER_KINDS",
    "DENOISING_STEPS",
    "WEIGHT_FILES",
    "apply_rope",
    "attention",
    "backend_for",
    "build_longlive",
    "CachePlan",
    "CausalWanModel",
    "CheckpointError",
    "CrossAttnCache",
    "DenoisingSampler",
    "download_weights",
    "DownloadError",
    "FlowMatchSchedule",
    "KVCache",
    "load_decoder",
    "load_generator",
    "load_text_encoder",
    "LongLive",
    "longlive_1_3b",
    "MissingWeightsError",
    "NoiseSource",
    "OfficialNoise",
    "RotaryEmbedding",
    "SeededNoise",
    "StreamingDecoder",
    "StreamingPipeline",
    "TextEncoder",
    "tiny",
    "tiny_small_window",
    "WanConfig",
    "warped_timesteps",
    "WeightPaths",
]
