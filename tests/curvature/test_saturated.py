"""The eigen solver on models whose weights were scaled up: a softmax so saturated that every
product is exactly zero (ARPACK's "starting vector is zero" before), and one that overflows."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from landscape.curvature import hessian_eigenvalues
from landscape.errors import LandscapeError

CLASSES = 20


def _scaled(scale: float) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    """A float32 linear classifier that gets every example right, its weights times ``scale``
    (the logit margin is ``scale``); 420 parameters, so the top end goes through eigsh."""
    model = nn.Linear(CLASSES, CLASSES)
    with torch.no_grad():
        model.weight.copy_(torch.eye(CLASSES) * scale)
        model.bias.zero_()
    x = torch.eye(CLASSES).repeat(3, 1)
    return model, (x, torch.arange(CLASSES).repeat(3))


def test_a_moderately_scaled_model_has_positive_curvature():
    model, data = _scaled(5.0)
    found = hessian_eigenvalues(model, data, k=2, seed=0)
    assert found.values[-1] > 1e-4 and found.converged


@pytest.mark.parametrize("which", ["largest", "both"])
def test_a_saturated_softmax_gives_zero_eigenvalues_with_a_warning(which):
    model, data = _scaled(1000.0)  # margin 1000: exp(-1000) is 0 in float32
    with pytest.warns(UserWarning, match="exactly zero"):
        found = hessian_eigenvalues(model, data, k=3, which=which, k_smallest=1, seed=0,
                                   return_vectors=True)
    n = 3 if which == "largest" else 4
    assert np.array_equal(found.values, np.zeros(n))
    assert np.allclose(found.vectors.T @ found.vectors, np.eye(n), atol=1e-12)
    assert np.all(found.residuals == 0.0) and found.converged


def test_overflowing_products_stop_with_one_clear_error():
    model, data = _scaled(1000.0)
    with torch.no_grad():
        model.weight[0, 0] = float("inf")  # the first class's logits are inf: loss NaN
    with pytest.raises(LandscapeError, match="NaN or inf"):
        hessian_eigenvalues(model, data, k=3, seed=0)
