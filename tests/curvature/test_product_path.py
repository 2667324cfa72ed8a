"""scipy's products (``matvec``) against the torch ones (``hvp``): the float64 result written
per weight, the tangent converted into a kept buffer, the finiteness check by one sum; and
what keeping a gradient graph is counted to hold."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from landscape.curvature import HessianOperator
from landscape.errors import LandscapeError
from landscape.models import build_model


def _setup(dtype: torch.dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 12, generator=gen, dtype=dtype)
    y = torch.randint(0, 3, (40,), generator=gen)
    model = build_model("mlp", input_shape=(12,), num_classes=3, seed=0).to(dtype)
    return model, (x, y)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("hvp", ["double", "forward"])
@pytest.mark.parametrize("chunk,cache", [(None, 1 << 30), (15, 1 << 30), (15, 0)])
def test_scipy_products_are_the_torch_products_in_float64(dtype, hvp, chunk, cache):
    model, data = _setup(dtype)
    scipy_side = HessianOperator(model, data, hvp=hvp, chunk=chunk, graph_cache=cache)
    torch_side = HessianOperator(model, data, hvp=hvp, chunk=chunk, graph_cache=cache)
    rng = np.random.default_rng(1)
    outputs = []
    for _ in range(3):  # the kept tangent buffer is reused: each product must stay exact
        v = rng.standard_normal(scipy_side.n_params)
        got = scipy_side.matvec(v)
        want = torch_side.hvp(torch.from_numpy(v)).to(torch.float64).numpy()
        assert got.dtype == np.float64
        assert np.array_equal(got, want)
        outputs.append(got)
    assert scipy_side.n_products == 3
    assert len({id(o) for o in outputs}) == 3 and not np.shares_memory(outputs[0], outputs[1])


def test_an_operator_that_overrides_hvp_gets_scipy_products_through_it():
    model, data = _setup(torch.float32)

    class Doubled(HessianOperator):
        def hvp(self, v):
            return 2 * super().hvp(v)

    v = np.random.default_rng(2).standard_normal(HessianOperator(model, data).n_params)
    plain = HessianOperator(model, data).matvec(v)
    assert np.array_equal(Doubled(model, data).matvec(v), 2 * plain)


def test_finiteness_check_is_exact():
    op = HessianOperator(*_setup(torch.float32))
    big = torch.full((4,), 3e38)  # finite entries whose float32 sum overflows
    op._check_finite(big)
    for bad in (float("nan"), float("inf"), -float("inf")):
        vec = torch.ones(5)
        vec[3] = bad
        with pytest.raises(LandscapeError, match="not finite"):
            op._check_finite(vec)
    mixed = torch.tensor([float("inf"), -float("inf"), 1.0])  # sums to NaN
    with pytest.raises(LandscapeError, match="not finite"):
        op._check_finite(mixed)


class _Shared(torch.nn.Module):
    """One 100 x 100 layer applied eight times: its graph saves the same weight eight times."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(100, 100)
        self.head = torch.nn.Linear(100, 3)

    def forward(self, x):
        for _ in range(8):
            x = torch.tanh(self.layer(x))
        return self.head(x)


def test_kept_graph_counts_the_gradient_not_the_weights_it_saves():
    torch.manual_seed(0)
    model = _Shared()
    data = (torch.randn(2, 100), torch.tensor([0, 2]))
    op = HessianOperator(model, data)
    weight_bytes = 4 * op.n_params
    _, grad, counted = op._gradient_graph(*op._chunks[0])
    assert sum(4 * g.numel() for g in grad) == weight_bytes
    # the gradient once, and what the two backward passes save for two examples (about as
    # much again here); the weight saved eight times is resident (counting it: 14.6x)
    assert weight_bytes <= counted < 3 * weight_bytes
    kept = HessianOperator(model, data, graph_cache=3 * weight_bytes)
    v = np.random.default_rng(3).standard_normal(op.n_params)
    assert np.array_equal(kept.matvec(v), HessianOperator(model, data, graph_cache=0).matvec(v))
    assert kept.hvp_description == "double (graph kept)"
