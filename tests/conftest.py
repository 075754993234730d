"""Shared fixtures: small synthetic sessions and event collection."""

from __future__ import annotations

import pytest

from longlive_rtc.generators import SyntheticGenerator

from .support import SMALL


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def small_generator() -> SyntheticGenerator:
    return SyntheticGenerator(SMALL)
