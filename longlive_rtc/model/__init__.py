"""LongLive re-implementation in torch: causal Wan DiT, KV cache, sampler, streaming pipeline, IO.

Nothing here imports WebRTC or HTTP code.
"""

from .config import WanConfig, longlive_1_3b, tiny, tiny_small_window
from .dit import CausalWanModel, CrossAttnCache
from .kv_cache import CachePlan, KVCache

__all__ = [
    "CachePlan",
    "CausalWanModel",
    "CrossAttnCache",
    "KVCache",
    "WanConfig",
    "longlive_1_3b",
    "tiny",
    "tiny_small_window",
]
