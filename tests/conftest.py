"""Shared fixtures: tiny datasets made by the code itself, and a private dataset cache."""
from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Keep generated datasets out of the user's cache (but share them across tests)."""
    if "LANDSCAPE_CACHE" not in os.environ:
        os.environ["LANDSCAPE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield


@pytest.fixture(scope="session")
def mnist1d_small():
    """MNIST-1D with 256 train / 128 test examples."""
    from landscape.data import load_dataset
    return load_dataset("mnist1d", train_subset=256, test_subset=128)


@pytest.fixture(scope="session")
def mnist1d_full():
    """The full MNIST-1D bundle (4000 / 1000)."""
    from landscape.data import load_dataset
    return load_dataset("mnist1d")


@pytest.fixture
def gen():
    """A seeded torch generator."""
    return torch.Generator().manual_seed(0)
