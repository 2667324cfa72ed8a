"""Preconditioned sharpness against exact references: the dense eigenvalues of P^-1 H on tiny
float64 models, with P read from PyTorch's own RMSprop / Adam state and checked against the
update the optimizer makes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from landscape.curvature import (PreconditionedOperator, dense_hessian, hessian_eigenvalues,
                                 optimizer_preconditioner, preconditioned_sharpness,
                                 preconditioned_threshold)
from landscape.curvature.hessian import HessianOperator
from landscape.errors import LandscapeError
from landscape.models import build_model
from landscape.params import flatten, named_tensors

N, FEATURES, CLASSES = 48, 5, 3


def _data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, FEATURES, generator=gen, dtype=torch.float64)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 0.5).long()
    return x, y


def _trained(make_opt, steps: int = 30):
    """A tiny float64 tanh MLP and its optimizer after ``steps`` full-batch steps."""
    x, y = _data()
    model = build_model("mlp", input_shape=(FEATURES,), num_classes=CLASSES, seed=0, width=6,
                        depth=1, activation="tanh").double()
    opt = make_opt(model.parameters())
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), opt


OPTIMIZERS = {
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.01),
    "rmsprop-momentum": lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.5),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    "adam-amsgrad": lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), amsgrad=True),
}


def _dense_top(model, data, diagonal):
    h = dense_hessian(model, data, chunk=None).numpy()
    return np.max(np.linalg.eigvals(np.diag(1.0 / diagonal) @ h).real)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_equals_dense_eigenvalue_of_preconditioned_hessian(name):
    model, opt = _trained(OPTIMIZERS[name])
    data = _data()
    pair, pre = preconditioned_sharpness(model, data, opt, tol=1e-10, max_products=200,
                                         chunk=None)
    expected = _dense_top(model, data, pre.diagonal)
    assert pair.converged
    assert abs(pair.value - expected) <= 1e-8 * abs(expected)
    # the preconditioned value is not the plain one: P matters
    plain = hessian_eigenvalues(model, data, k=1).values[-1]
    assert abs(pair.value - plain) > 0.1 * plain


@pytest.mark.parametrize("name", ["rmsprop", "adam", "adamw"])
def test_diagonal_is_what_the_update_divides_by(name):
    """One more step: the parameter change is -lr * (gradient or first moment) / P, with P as
    read after that step (no momentum, no weight decay in the numerator for these)."""
    model, opt = _trained(OPTIMIZERS[name])
    x, y = _data()
    before = flatten(named_tensors(model)).clone()
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    grad = flatten({n: p.grad for n, p in named_tensors(model).items()}).clone()
    if name == "adamw":  # decoupled decay first, as AdamW applies it
        before = before * (1 - 0.01 * 0.1)
    opt.step()
    pre = optimizer_preconditioner(model, opt)
    if name == "rmsprop":
        numerator = grad.numpy()
    else:
        numerator = flatten({n: opt.state[p]["exp_avg"]
                             for n, p in named_tensors(model).items()}).numpy()
    step = (flatten(named_tensors(model)) - before).numpy()
    np.testing.assert_allclose(step, -0.01 * numerator / pre.diagonal, rtol=1e-9, atol=1e-15)


def test_thresholds_of_the_paper():
    assert preconditioned_threshold("adam", 1e-3, 0.9) == pytest.approx(38 / 1e-3)
    assert preconditioned_threshold("rmsprop", 1e-3) == pytest.approx(2 / 1e-3)
    assert preconditioned_threshold("rmsprop", 0.1, 0.5) == pytest.approx(30.0)
    model, opt = _trained(OPTIMIZERS["adam"], steps=2)
    assert optimizer_preconditioner(model, opt).threshold == pytest.approx(38 / 0.01)
    with pytest.raises(LandscapeError, match="no preconditioned threshold"):
        preconditioned_threshold("sgd", 0.1)


def test_operator_is_symmetric_and_counts_products():
    model, opt = _trained(OPTIMIZERS["rmsprop"])
    pre = optimizer_preconditioner(model, opt)
    op = PreconditionedOperator(HessianOperator(model, _data(), chunk=None), pre.diagonal)
    dense = np.stack([op.matvec(e) for e in np.eye(op.n_params)], axis=1)
    np.testing.assert_allclose(dense, dense.T, atol=1e-10)
    assert op.n_products == op.n_params and op.inner.n_products == op.n_params


def test_refuses_sgd_unstepped_and_bad_diagonals():
    model, opt = _trained(lambda p: torch.optim.SGD(p, lr=0.1))
    with pytest.raises(LandscapeError, match="no diagonal preconditioner"):
        optimizer_preconditioner(model, opt)
    fresh = torch.optim.Adam(model.parameters())
    with pytest.raises(LandscapeError, match="after its first step"):
        optimizer_preconditioner(model, fresh)
    inner = HessianOperator(model, _data(), chunk=None)
    with pytest.raises(LandscapeError, match="finite and positive"):
        PreconditionedOperator(inner, np.zeros(inner.n_params))
    with pytest.raises(LandscapeError, match="entries"):
        PreconditionedOperator(inner, np.ones(3))


# ----------------------------------------------------------------------------- during training

class _Stop(Exception):
    pass


def _stop_at(epoch):
    def callback(entry):
        if entry["epoch"] == epoch:
            raise _Stop
    return callback


def test_training_tracks_the_preconditioned_sharpness(tmp_path, mnist1d_small):
    """RMSprop without momentum: each tracked value is the dense top eigenvalue of P^-1 H with
    the optimizer state of that epoch (from the resume state), threshold 2/lr."""
    from landscape.checkpoint import load_checkpoint, read_checkpoint
    from landscape.train import TrainConfig, train

    config = TrainConfig(optimizer="rmsprop", lr=0.002, batch_size="full", epochs=5,
                         track_eigenvalues=1, checkpoint_every=1, progress=False)
    assert config.momentum == 0.0  # PyTorch's default for RMSprop, not SGD's 0.9
    model = build_model("mlp", mnist1d_small, seed=0, width=6, depth=1)
    with pytest.raises(_Stop):
        train(model, mnist1d_small, config, out_dir=tmp_path, callback=_stop_at(3))
    history = json.loads((tmp_path / "history.json").read_text())["epochs"]
    entry = history[-1]
    assert entry["epoch"] == 2
    assert entry["preconditioned_threshold"] == pytest.approx(2 / 0.002)
    state = read_checkpoint(tmp_path / "resume.pt")["extra"]["resume"]
    ckpt, _ = load_checkpoint(tmp_path / "checkpoints" / "epoch_0002.pt")
    ckpt = ckpt.double()
    opt = torch.optim.RMSprop(ckpt.parameters(), lr=0.002)
    opt.load_state_dict(state["optimizer"])
    data = (mnist1d_small.train[0].double(), mnist1d_small.train[1])
    expected = _dense_top(ckpt, data, optimizer_preconditioner(ckpt, opt).diagonal)
    assert entry["lambda_max_preconditioned"] == pytest.approx(expected, rel=1e-3)
    assert entry["lambda_max_preconditioned"] > 3 * entry["lambda_max"]


def test_sgd_history_has_no_preconditioned_fields(tmp_path, mnist1d_small):
    from landscape.train import TrainConfig, train

    config = TrainConfig(lr=0.01, batch_size="full", epochs=1, track_eigenvalues=1,
                         checkpoint_every=0, progress=False)
    assert config.momentum == 0.9
    result = train(build_model("mlp", mnist1d_small, seed=0, width=6, depth=1), mnist1d_small,
                   config)
    assert "lambda_max" in result.final and "lambda_max_preconditioned" not in result.final


def test_resume_with_adam_tracking_is_identical(tmp_path, mnist1d_small):
    from landscape.train import TrainConfig, train

    config = TrainConfig(optimizer="adam", lr=0.001, batch_size=64, epochs=3,
                         track_eigenvalues=1, checkpoint_every=1, progress=False)
    whole = train(build_model("mlp", mnist1d_small, seed=1, width=6, depth=1), mnist1d_small,
                  config, out_dir=tmp_path / "whole")
    with pytest.raises(_Stop):
        train(build_model("mlp", mnist1d_small, seed=1, width=6, depth=1), mnist1d_small,
              config, out_dir=tmp_path / "cut", callback=_stop_at(3))
    cut = train(build_model("mlp", mnist1d_small, seed=1, width=6, depth=1), mnist1d_small,
                config, out_dir=tmp_path / "cut", resume=True)
    for field in ("lambda_max", "lambda_max_preconditioned", "preconditioned_threshold"):
        assert [e[field] for e in cut.history] == [e[field] for e in whole.history], field
    assert whole.final["preconditioned_threshold"] == pytest.approx(38 / 0.001)
