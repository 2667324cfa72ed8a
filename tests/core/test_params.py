import pytest
import torch

from landscape.errors import LandscapeError
from landscape.models import build_model
from landscape.params import (assign, clone_tensors, flatten, is_bias_or_norm, named_tensors,
                              norm_layer_names, set_offset, unflatten)


def test_weights_and_states(mnist1d_small):
    model = build_model("cnn1d", mnist1d_small, batchnorm=True)
    weights = named_tensors(model, "weights")
    states = named_tensors(model, "states")
    assert set(weights) < set(states)
    extra = set(states) - set(weights)
    assert extra and all("running" in n for n in extra)  # BN statistics, no counters
    norms = norm_layer_names(model)
    assert any(n.endswith("running_var") for n in norms)
    for name, t in weights.items():
        assert is_bias_or_norm(name, t, norms) == (t.ndim == 1)
    with pytest.raises(LandscapeError):
        named_tensors(model, "grads")


def test_flatten_roundtrip_and_errors(mnist1d_small):
    model = build_model("mlp", mnist1d_small)
    w = named_tensors(model)
    vec = flatten(w)
    assert vec.numel() == 2698
    back = unflatten(vec, w)
    assert all(torch.equal(back[n], w[n]) for n in w)
    with pytest.raises(LandscapeError, match="2698"):
        unflatten(vec[:-1], w)


def test_set_offset_and_assign(mnist1d_small):
    model = build_model("mlp", mnist1d_small)
    base = clone_tensors(named_tensors(model))
    d1 = {n: torch.ones_like(t) for n, t in base.items()}
    d2 = {n: torch.full_like(t, 2.0) for n, t in base.items() if t.ndim > 1}
    set_offset(model, base, [d1, d2], [0.5, -1.0])
    now = named_tensors(model)
    for n, t in base.items():
        expected = t + 0.5 - (2.0 if t.ndim > 1 else 0.0)
        assert torch.allclose(now[n], expected)
    assign(model, base)
    assert all(torch.equal(now[n], base[n]) for n in base)
    with pytest.raises(LandscapeError):
        assign(model, {"nope": torch.zeros(1)})
