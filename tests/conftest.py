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


@pytest.fixture(scope="module")
def tiny(mnist1d_small):
    """A float64 ReLU MLP (40 -> 8 -> 8 -> 10) on 64 MNIST-1D examples, briefly trained."""
    from torch import nn

    from landscape.models import build_model

    x, y = mnist1d_small.train[0][:64].double(), mnist1d_small.train[1][:64]
    model = build_model("mlp", mnist1d_small, seed=0, width=8).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), (x, y)
