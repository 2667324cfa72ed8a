"""Mode connectivity: curve geometry, BatchNorm recomputation, curve training and resume."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from landscape import build_model
from landscape.connect import (ConnectOptions, connect, curve_point, has_batchnorm,
                               recompute_batchnorm)
from landscape.errors import LandscapeError
from landscape.params import named_tensors
from landscape.train import TrainConfig, evaluate_split, loss_function, train

FAST = ConnectOptions(epochs=4, batch_size=32, lr=0.05, points=5, device="cpu")


@pytest.fixture(scope="module")
def minima(mnist1d_small):
    """Two small MLPs trained from different seeds on 256 MNIST-1D examples."""
    models = []
    for seed in (0, 1):
        model = build_model("mlp", mnist1d_small, seed=seed, width=32, depth=1)
        train(model, mnist1d_small, TrainConfig(epochs=30, batch_size=32, lr=0.05, seed=seed,
                                                device="cpu", progress=False, eval_every=30))
        models.append(model)
    return models


@pytest.mark.parametrize("curve", ["bezier", "polychain"])
def test_curve_endpoints_are_the_models_bit_for_bit(curve, minima):
    wa, wb = named_tensors(minima[0]), named_tensors(minima[1])
    gen = torch.Generator().manual_seed(3)
    for name in wa:
        theta = torch.randn(wa[name].shape, generator=gen) * 5
        assert torch.equal(curve_point(curve, wa[name], theta, wb[name], 0.0), wa[name])
        assert torch.equal(curve_point(curve, wa[name], theta, wb[name], 1.0), wb[name])


def test_curve_formulas_in_closed_form():
    w1, theta, w2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]), torch.tensor([3.0, 4.0])
    t = 0.25
    expect = (1 - t) ** 2 * w1 + 2 * t * (1 - t) * theta + t ** 2 * w2
    assert torch.allclose(curve_point("bezier", w1, theta, w2, t), expect, atol=0, rtol=1e-7)
    # The chain passes through theta at t = 1/2 and is straight on each half.
    assert torch.equal(curve_point("polychain", w1, theta, w2, 0.5), theta)
    assert torch.allclose(curve_point("polychain", w1, theta, w2, 0.75), (theta + w2) / 2)
    with pytest.raises(LandscapeError, match="unknown curve"):
        curve_point("spline", w1, theta, w2, t)


def test_trained_curve_beats_the_straight_line_at_its_midpoint(minima, mnist1d_small):
    result = connect(*minima, mnist1d_small, progress=False,
                     options=ConnectOptions(epochs=15, batch_size=32, lr=0.05, points=11,
                                            device="cpu"))
    mid = 5
    curve, line = result.curve.metrics["train_loss"], result.line.metrics["train_loss"]
    assert line[mid] > max(line[0], line[-1]) + 0.1  # the straight line has a barrier
    assert curve[mid] < line[mid]
    assert result.summary["curve"]["train_barrier"] < result.summary["line"]["train_barrier"]
    # The ends of both paths are the two models themselves (no BatchNorm: nothing recomputed).
    loss_fn = loss_function("cross_entropy", mnist1d_small.num_classes)
    ends = [evaluate_split(m, *mnist1d_small.train, loss_fn)[0] for m in minima]
    assert (curve[0], curve[-1]) == (line[0], line[-1]) == tuple(ends)
    assert result.curve.provenance["curve"] == "bezier"
    assert list(result.curve.anchors["labels"]) == ["A", "B"]
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_recompute_batchnorm_matches_the_data_statistics(mnist1d_small):
    model = build_model("cnn1d", mnist1d_small, seed=0, batchnorm=True, channels=4)
    assert has_batchnorm(model) and not has_batchnorm(build_model("mlp", mnist1d_small))
    x = mnist1d_small.train[0]
    recompute_batchnorm(model, x, batch_size=len(x))
    first_conv, bn = model[1], model[2]
    with torch.no_grad():
        pre = first_conv(x.unsqueeze(1))
    assert torch.allclose(bn.running_mean, pre.mean(dim=(0, 2)), atol=1e-5, rtol=1e-5)
    assert torch.allclose(bn.running_var, pre.transpose(0, 1).reshape(4, -1).var(dim=1),
                          atol=1e-5, rtol=1e-5)
    assert not model.training


class _Stop(Exception):
    pass


def _stop_at(epoch_to_stop: int):
    def hook(epoch: int, _loss: float) -> None:
        if epoch == epoch_to_stop:
            raise _Stop
    return hook


def test_resume_after_a_stop_equals_an_uninterrupted_run(minima, mnist1d_small, tmp_path):
    options = ConnectOptions(**{**FAST.__dict__, "checkpoint_seconds": 0.0})
    whole = connect(*minima, mnist1d_small, options=options, progress=False,
                    state_path=tmp_path / "whole.pt")
    state = tmp_path / "cut.pt"
    with pytest.raises(_Stop):
        connect(*minima, mnist1d_small, options=options, progress=False, state_path=state,
                on_epoch=_stop_at(2))
    resumed = connect(*minima, mnist1d_small, options=options, progress=False,
                      state_path=state, resume=True)
    assert resumed.epochs_resumed == 2
    for name, value in whole.bend.items():
        assert torch.equal(resumed.bend[name], value)
    for metric, values in whole.curve.metrics.items():
        np.testing.assert_array_equal(resumed.curve.metrics[metric], values)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]


def test_resume_refuses_other_settings(minima, mnist1d_small, tmp_path):
    state = tmp_path / "state.pt"
    connect(*minima, mnist1d_small, options=FAST, progress=False, state_path=state)
    other = ConnectOptions(**{**FAST.__dict__, "lr": 0.01})
    with pytest.raises(LandscapeError, match="lr differ"):
        connect(*minima, mnist1d_small, options=other, progress=False, state_path=state,
                resume=True)
    fewer = ConnectOptions(**{**FAST.__dict__, "epochs": 2})
    with pytest.raises(LandscapeError, match="more than the 2 asked for"):
        connect(*minima, mnist1d_small, options=fewer, progress=False, state_path=state,
                resume=True)


def test_bad_pairs_and_options_are_refused(minima, mnist1d_small):
    with pytest.raises(LandscapeError, match="identical"):
        connect(minima[0], minima[0], mnist1d_small, options=FAST, progress=False)
    wide = build_model("mlp", mnist1d_small, seed=0, width=8, depth=1)
    with pytest.raises(LandscapeError, match="different architectures"):
        connect(minima[0], wide, mnist1d_small, options=FAST, progress=False)
    with pytest.raises(LandscapeError, match="points"):
        ConnectOptions(points=2).validate()


_KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    import torch
    from landscape import load_checkpoint, load_dataset
    from landscape.connect import ConnectOptions, connect

    a, b, state, kill = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    data = load_dataset("mnist1d", train_subset=256, test_subset=128)
    options = ConnectOptions(epochs=4, batch_size=32, lr=0.05, points=5, device="cpu",
                             checkpoint_seconds=0.0)
    def hook(epoch, loss):
        if epoch == kill:
            os.kill(os.getpid(), signal.SIGKILL)
    result = connect(load_checkpoint(a)[0], load_checkpoint(b)[0], data, options=options,
                     state_path=state, resume=True, progress=False, on_epoch=hook)
    torch.save(result.bend, state + ".bend")
""")


@pytest.mark.slow
def test_resume_after_sigkill_equals_an_uninterrupted_run(minima, tmp_path):
    from landscape import save_checkpoint

    paths = [save_checkpoint(tmp_path / f"m{k}.pt", m) for k, m in enumerate(minima)]
    script = tmp_path / "run.py"
    script.write_text(_KILLED_RUN)

    def run(state, kill):
        return subprocess.run([sys.executable, str(script), str(paths[0]), str(paths[1]),
                               str(state), str(kill)], capture_output=True, text=True,
                              timeout=300)

    killed = run(tmp_path / "cut.pt", 3)
    assert killed.returncode == -9, killed.stderr
    assert (tmp_path / "cut.pt").is_file() and not (tmp_path / "cut.pt.bend").exists()
    assert run(tmp_path / "cut.pt", 0).returncode == 0
    assert run(tmp_path / "whole.pt", 0).returncode == 0
    cut = torch.load(tmp_path / "cut.pt.bend")
    whole = torch.load(tmp_path / "whole.pt.bend")
    assert cut.keys() == whole.keys()
    assert all(torch.equal(cut[k], whole[k]) for k in whole)


def test_batchnorm_statistics_are_recomputed_along_the_curve(mnist1d_small):
    import copy

    a, b = (build_model("cnn1d", mnist1d_small, seed=s, batchnorm=True, channels=4)
            for s in (0, 1))
    result = connect(a, b, mnist1d_small, progress=False,
                     options=ConnectOptions(epochs=1, batch_size=64, points=3, device="cpu"))
    assert result.curve.provenance["batchnorm_recomputed"] is True
    # At t = 0 the curve is model a with its BatchNorm statistics recomputed on the train set.
    ref = copy.deepcopy(a)
    recompute_batchnorm(ref, mnist1d_small.train[0])
    loss_fn = loss_function("cross_entropy", mnist1d_small.num_classes)
    loss, acc = evaluate_split(ref, *mnist1d_small.test, loss_fn)
    assert result.curve.metrics["test_loss"][0] == pytest.approx(loss, rel=1e-6)
    assert result.curve.metrics["test_acc"][0] == acc
    # The endpoints themselves are left as they were (their own running statistics).
    assert not torch.equal(a[2].running_mean, ref[2].running_mean)
