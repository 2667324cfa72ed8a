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


def test_parameter_norms_total_layers_and_largest():
    import math

    from landscape.params import norm_outliers, parameter_norms

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.fill_(1.0)  # 6 ones
        model[0].bias.fill_(2.0)    # 2 twos
        model[2].weight.fill_(-3.0)
        model[2].bias.fill_(0.0)
    norms = parameter_norms(model)
    assert norms.layers == {"0": pytest.approx(math.sqrt(6 + 8)),
                            "2": pytest.approx(math.sqrt(18))}
    assert norms.total == pytest.approx(math.sqrt(6 + 8 + 18))
    assert norms.largest == "2"
    assert norms.to_dict()["largest"] == "2"
    assert norm_outliers({"sgd": 21.0, "rmsprop": 21.5, "rprop": 2082.0}) == ["rprop"]
    assert norm_outliers({"a": 21.0, "b": 30.0, "c": 150.0}) == []
    assert norm_outliers({"a": 1.0, "b": 1.5, "c": 0.01}) == ["c"]
    assert norm_outliers({"a": 5.0}) == []
