"""Video generators: the protocol, the synthetic default and (lazily) LongLive."""

from .base import Generator, Geometry, PromptEmbedding
from .synthetic import SyntheticGenerator

GENERATOR_NAMES = ("synthetic", "longlive")

__all__ = ["GENERATOR_NAMES", "Generator", "Geometry", "PromptEmbedding", "SyntheticGenerator"]
