"""Fixtures every test module shares."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One intra-op thread per test, the previous count restored after: on a shared 2-core machine torch's default
    pool oversubscribes the cores and tiny networks run ~10-100x slower (measured: 29 s vs 0.3 s to land a U-Net
    student). Tests that time or set threads themselves (test_profile) still can: this only sets the start value."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def torch_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torch home with the offline FID/LPIPS weights, converted once per session from the registry packages
    (``caches=[]``: never an official file from this machine's caches, so every run sees the same bytes). Tests
    read it; verify_weights adds its report to weights.json; nothing replaces its files."""
    from alap.metrics.weights.provide import provision_weights

    home = tmp_path_factory.mktemp("torch_home")
    provision_weights(home, caches=[])
    return home
