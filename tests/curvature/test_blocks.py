"""Per-layer curvature: the diagonal blocks' top eigenvalues and traces against the dense
matrix; block traces sum to the full trace."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from landscape.curvature import HessianOptions, dense_hessian
from landscape.curvature.blocks import block_curvature, parameter_groups
from landscape.curvature.ggn import OutputCurvatureOperator
from landscape.errors import LandscapeError


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(20, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (20,), generator=gen)
    return model, (x, y)


@pytest.mark.parametrize("curvature", ["hessian", "ggn"])
def test_blocks_match_the_dense_matrix_and_sum_to_its_trace(tiny, curvature):
    model, data = tiny
    if curvature == "hessian":
        dense = dense_hessian(model, data).numpy()
    else:
        op = OutputCurvatureOperator(model, data, kind="ggn")
        dense = op.matmat(np.eye(op.n_params))
    # 24 + 15 parameters: a budget of 75 products takes each block's trace exactly
    blocks = block_curvature(model, data, options=HessianOptions(curvature=curvature),
                             trace_products=75, tol=1e-10)
    assert [b.name for b in blocks] == ["0", "2"] and [b.n_params for b in blocks] == [24, 15]
    start = 0
    for b in blocks:
        sub = dense[start:start + b.n_params, start:start + b.n_params]
        assert b.top == pytest.approx(np.linalg.eigvalsh(sub)[-1], rel=1e-8)
        assert b.trace == pytest.approx(np.trace(sub), rel=1e-9, abs=1e-12)
        start += b.n_params
    assert sum(b.trace for b in blocks) == pytest.approx(np.trace(dense), rel=1e-9)


def test_groups_by_layer_and_by_pattern():
    shapes = {"conv1.weight": (2, 1, 3), "conv1.bias": (2,), "fc.weight": (4, 2),
              "fc.bias": (4,)}
    layers = parameter_groups(shapes)
    assert list(layers) == ["conv1", "fc"]
    np.testing.assert_array_equal(layers["conv1"], np.arange(8))
    np.testing.assert_array_equal(layers["fc"], np.arange(8, 20))
    biases = parameter_groups(shapes, "*.bias")
    np.testing.assert_array_equal(biases["*.bias"], [6, 7, 16, 17, 18, 19])
    with pytest.raises(LandscapeError, match="no parameter matches"):
        parameter_groups(shapes, "bn*")


def test_relu_layer_blocks_of_hessian_and_ggn_agree():
    """A ReLU network is linear in each layer's own weights and bias, so a layer's diagonal
    block of the Hessian has no second-derivative term and equals its GGN block; the full
    matrices differ (the off-diagonal blocks keep it). Dense float64 references."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    gen = torch.Generator().manual_seed(1)
    data = (torch.randn(20, 5, generator=gen, dtype=torch.float64),
            torch.randint(0, 3, (20,), generator=gen))
    hess = dense_hessian(model, data).numpy()
    op = OutputCurvatureOperator(model, data, kind="ggn")
    ggn = op.matmat(np.eye(op.n_params))
    for lo, hi in ((0, 24), (24, 39)):
        np.testing.assert_allclose(hess[lo:hi, lo:hi], ggn[lo:hi, lo:hi], atol=1e-12)
    assert np.abs(hess[:24, 24:] - ggn[:24, 24:]).max() > 1e-3
