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


@pytest.fixture(scope="session", autouse=True)
def ice_candidates_on_loopback_only_machines() -> None:
    """aioice never offers 127.0.0.1: on a machine with no other address, let the tests' peers use it."""
    from .rtc_client import allow_loopback_ice, loopback_only

    if loopback_only():
        allow_loopback_ice()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: one intra-op thread is fastest and immune to a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def small_generator() -> SyntheticGenerator:
    return SyntheticGenerator(SMALL)
