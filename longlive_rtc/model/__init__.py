"""LongLive re-implementation in torch: causal Wan DiT, KV cache, sampler, streaming pipeline, IO.

Nothing here imports WebRTC or HTTP code.
"""

from .attention import attention, backend_for
from .config import WanConfig, longlive_1_3b, tiny, tiny_small_window
from .dit import CausalWanModel, CrossAttnCache
from .kv_cache import CachePlan, KVCache
from .noise import NoiseSource, OfficialNoise, SeededNoise
from .pipeline import StreamingPipeline
from .rope import RotaryEmbedding, apply_rope
from .sampler import DENOISING_STEPS, DenoisingSampler, FlowMatchSchedule, warped_timesteps

__all__ = [
    "DENOISING_STEPS",
    "CachePlan",
    "CausalWanModel",
    "CrossAttnCache",
    "DenoisingSampler",
    "FlowMatchSchedule",
    "KVCache",
    "NoiseSource",
    "OfficialNoise",
    "RotaryEmbedding",
    "SeededNoise",
    "StreamingPipeline",
    "WanConfig",
    "apply_rope",
    "attention",
    "backend_for",
    "longlive_1_3b",
    "tiny",
    "tiny_small_window",
    "warped_timesteps",
]

# --- IO (issue 6) ---
from .checkpoint import CheckpointError  # noqa: E402
from .decode import DECODER_KINDS, StreamingDecoder  # noqa: E402
from .download import WEIGHT_FILES, DownloadError, download_weights  # noqa: E402
from .text_encoder import TextEncoder, load_text_encoder  # noqa: E402
from .weights import LongLive, MissingWeightsError, WeightPaths, build_longlive, load_decoder, load_generator  # noqa: E402

__all__ += [
    "DECODER_KINDS",
    "WEIGHT_FILES",
    "CheckpointError",
    "DownloadError",
    "LongLive",
    "MissingWeightsError",
    "StreamingDecoder",
    "TextEncoder",
    "WeightPaths",
    "build_longlive",
    "download_weights",
    "load_decoder",
    "load_generator",
    "load_text_encoder",
]
