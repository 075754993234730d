"""Video generators: the protocol, the synthetic default and (lazily) LongLive."""

from .base import Generator, Geometry, PromptEmbedding
from .synthetic import SyntheticGenerator

__all__ = ["Generator", "Geometry", "PromptEmbedding", "SyntheticGenerator"]
