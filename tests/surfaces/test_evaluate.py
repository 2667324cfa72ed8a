"""Evaluator: in-place offsets, closed-form losses, independent evaluation, vmap, BN, bf16."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from landscape import build_model
from landscape.data import DataBundle
from landscape.directions import random_directions
from landscape.errors import LandscapeError
from landscape.evaluate import Evaluator
from landscape.params import named_tensors, set_offset
from landscape.train import evaluate_split, loss_function

from closed_forms import LogOfFirst, Quadratic, mean_output


def _quadratic(seed=0):
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(12, 12, generator=g, dtype=torch.float64)
    a = m + m.T  # symmetric, indefinite
    theta = torch.randn(3, 4, generator=g, dtype=torch.float64)
    return Quadratic(a, theta)


def _pair(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g, dtype=torch.float64), torch.zeros(n, dtype=torch.long)


def _bundle(n_train=96, n_test=48, features=40, classes=10, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    make = lambda n: (torch.randn(n, features, generator=g, dtype=dtype),  # noqa: E731
                      torch.randint(0, classes, (n,), generator=g))
    return DataBundle(train=make(n_train), test=make(n_test), num_classes=classes,
                      name="synthetic")


def _cnn(batchnorm=True, dtype=torch.float64, seed=0):
    model = build_model("cnn1d", input_shape=(40,), num_classes=10, channels=8,
                        batchnorm=batchnorm, seed=seed).to(dtype)
    if batchnorm:  # non-trivial running statistics, as after training
        g = torch.Generator().manual_seed(seed + 100)
        with torch.no_grad():
            for name, t in model.state_dict().items():
                if name.endswith("running_mean"):
                    t.copy_(0.1 * torch.randn(t.shape, generator=g, dtype=dtype))
                elif name.endswith("running_var"):
                    t.copy_(0.5 + torch.rand(t.shape, generator=g, dtype=dtype))
    return model.eval()


def test_set_point_equals_params_set_offset_bit_for_bit():
    model = _cnn(dtype=torch.float32)
    reference = copy.deepcopy(model)
    dirs = random_directions(model, count=2, kind="states", ignore="none", seed=1)
    base = {n: t.detach().clone() for n, t in named_tensors(reference, "states").items()}
    with Evaluator(model, _bundle(), dirs) as ev:
        for coords in [(0.3, -1.7), (0.0, 2.5), (-0.25, 0.0)]:
            ev.set_point(coords)
            set_offset(reference, base, dirs, coords)
            for n, t in reference.state_dict().items():
                assert torch.equal(model.state_dict()[n], t), n


def test_quadratic_loss_matches_closed_form():
    model = _quadratic()
    d1, d2 = random_directions(model, count=2, ignore="none", seed=3)
    a = model.a.numpy().copy()
    t, u, v = (x.detach().reshape(-1).numpy().copy()  # copies: the model changes in place
               for x in (model.theta, d1["theta"], d2["theta"]))
    with Evaluator(model, _pair(), [d1, d2], metrics=("train_loss",), loss=mean_output) as ev:
        for alpha, beta in [(0.0, 0.0), (1.5, -0.5), (-2.0, 3.25), (0.1, 0.7)]:
            p = t + alpha * u + beta * v
            assert ev.evaluate((alpha, beta))["train_loss"] == pytest.approx(
                0.5 * p @ a @ p, rel=1e-12, abs=1e-12)


def test_mse_of_a_linear_model_matches_closed_form():
    bundle = _bundle(n_train=40, n_test=20, features=5, classes=3, dtype=torch.float64)
    model = nn.Linear(5, 3).double()
    d1, d2 = random_directions(model, count=2, ignore="none", seed=0)
    xs, ys = (t.numpy() for t in bundle.train)
    xt, yt = (t.numpy() for t in bundle.test)
    w0, b0 = model.weight.detach().numpy().copy(), model.bias.detach().numpy().copy()
    metrics = ("train_loss", "train_acc", "test_loss", "test_acc")
    with Evaluator(model, bundle, [d1, d2], metrics=metrics, loss="mse") as ev:
        for alpha, beta in [(0.0, 0.0), (0.8, -1.2), (-3.0, 0.5)]:
            w = w0 + alpha * d1["weight"].numpy() + beta * d2["weight"].numpy()
            b = b0 + alpha * d1["bias"].numpy() + beta * d2["bias"].numpy()
            got = ev.evaluate((alpha, beta))
            for split, (x, y) in (("train", (xs, ys)), ("test", (xt, yt))):
                out = x @ w.T + b
                assert got[f"{split}_loss"] == pytest.approx(
                    np.mean((out - np.eye(3)[y]) ** 2), rel=1e-12)
                assert got[f"{split}_acc"] == np.mean(out.argmax(1) == y)


@pytest.mark.parametrize("chunk", [8192, 37])
def test_grid_values_equal_an_independent_fresh_model(chunk):
    """Load theta + a d1 + b d2 into a newly built model and evaluate it the plain way."""
    bundle = _bundle(dtype=torch.float64)
    model = _cnn()
    theta = {n: t.detach().clone() for n, t in model.state_dict().items()}
    d1, d2 = random_directions(model, count=2, seed=7)
    loss_fn = loss_function("cross_entropy", 10)
    metrics = ("train_loss", "train_acc", "test_loss", "test_acc")
    with Evaluator(model, bundle, [d1, d2], metrics=metrics, chunk=chunk) as ev:
        for alpha, beta in [(0.5, -0.3), (-1.0, 1.0), (0.0, 0.25)]:
            got = ev.evaluate((alpha, beta))
            fresh = _cnn(seed=123)  # other initial weights: everything comes from the dict
            state = dict(theta)
            for n in d1:
                state[n] = theta[n] + alpha * d1[n] + beta * d2[n]
            fresh.load_state_dict(state)
            for split in ("train", "test"):
                loss, acc = evaluate_split(fresh, *bundle.split(split), loss_fn)
                assert got[f"{split}_loss"] == pytest.approx(loss, rel=1e-12)
                assert got[f"{split}_acc"] == acc


@pytest.mark.parametrize("kind", ["weights", "states"])
def test_batched_vmap_path_equals_the_loop(kind):
    bundle = _bundle(dtype=torch.float64)
    model = _cnn()
    dirs = random_directions(model, count=2, kind=kind, ignore="none" if kind == "states"
                             else "biasbn", seed=2)
    # small steps for states: far out, perturbed running variances turn negative (NaN)
    scale = 0.2 if kind == "states" else 1.0
    coords = [(scale * a, scale * b) for a in (-0.5, 0.0, 0.75) for b in (-1.0, 0.4)]
    metrics = ("train_loss", "train_acc", "test_loss", "test_acc")
    with Evaluator(model, bundle, dirs, metrics=metrics, chunk=64) as ev:
        looped = [ev.evaluate(c) for c in coords]
        batched = ev.evaluate_batch(coords)
    assert all(math.isfinite(v) for r in looped for v in r.values())
    assert len({r["train_loss"] for r in looped}) == len(coords)
    for lo, ba in zip(looped, batched):
        for m in metrics:
            if m.endswith("loss"):
                assert ba[m] == pytest.approx(lo[m], rel=1e-12)
            else:
                assert ba[m] == lo[m]


def test_nan_and_inf_losses_are_returned_not_raised():
    model = LogOfFirst()
    direction = {"w": torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)}
    with Evaluator(model, _pair(), [direction], metrics=("train_loss",),
                   loss=mean_output) as ev:
        assert math.isnan(ev.evaluate((-2.0,))["train_loss"])
        assert ev.evaluate((-1.0,))["train_loss"] == -math.inf
        assert ev.evaluate((math.e - 1,))["train_loss"] == pytest.approx(1.0, rel=1e-15)
        batched = ev.evaluate_batch([(-2.0,), (-1.0,), (0.0,)])
    assert math.isnan(batched[0]["train_loss"]) and batched[1]["train_loss"] == -math.inf
    assert batched[2]["train_loss"] == 0.0


def _bn_mlp():
    model = build_model("mlp", input_shape=(40,), num_classes=10, width=12, depth=1,
                        batchnorm=True).double().eval()
    return model


@pytest.mark.parametrize("chunk", [96, 24])
def test_batchnorm_recalibration_recomputes_statistics_at_each_point(chunk):
    bundle = _bundle(dtype=torch.float64)
    model = _bn_mlp()
    original = {n: t.clone() for n, t in model.state_dict().items()}
    (d,) = random_directions(model, count=1, seed=0)
    x, _ = bundle.train
    with Evaluator(model, bundle, [d], metrics=("train_loss", "test_loss"),
                   bn_recalibrate=True, chunk=chunk) as ev:
        got = ev.evaluate((0.6,))
        bn = model[2]
        w = original["1.weight"] + 0.6 * d["1.weight"]
        pre = x @ w.T + original["1.bias"]  # biases are not perturbed (biasbn)
        torch.testing.assert_close(bn.running_mean, pre.mean(0), rtol=1e-12, atol=1e-14)
        if chunk >= len(x):  # one pass: the exact (unbiased) variance of the data
            torch.testing.assert_close(bn.running_var, pre.var(0), rtol=1e-12, atol=0)
        else:  # equal chunks: the average of the chunks' unbiased variances
            var = torch.stack([c.var(0) for c in pre.split(chunk)]).mean(0)
            torch.testing.assert_close(bn.running_var, var, rtol=1e-12, atol=0)
        assert bn.momentum == 0.1 and not bn.training
        fresh = _bn_mlp()
        fresh.load_state_dict(model.state_dict())
        loss_fn = loss_function("cross_entropy", 10)
        assert got["train_loss"] == pytest.approx(
            evaluate_split(fresh, *bundle.train, loss_fn)[0], rel=1e-12)
        assert got["test_loss"] == pytest.approx(
            evaluate_split(fresh, *bundle.test, loss_fn)[0], rel=1e-12)
    for n, t in model.state_dict().items():  # statistics and weights restored
        assert torch.equal(t, original[n]), n


def test_bf16_error_is_measured_against_fp32():
    bundle = _bundle()
    model = _cnn(dtype=torch.float32)
    dirs = random_directions(model, count=2, seed=0)
    points = [(0.0, 0.0), (1.0, -1.0)]
    with Evaluator(model, bundle, dirs, metrics=("train_loss", "train_acc"),
                   precision="bf16") as ev:
        low = [ev.evaluate(p) for p in points]
        ref = [ev.evaluate(p, precision="fp32") for p in points]
        err = ev.precision_error(points)
    assert low[0]["train_loss"] != ref[0]["train_loss"]  # autocast really ran in bf16
    for m in ("train_loss", "train_acc"):
        assert err[m] == max(abs(lo[m] - r[m]) for lo, r in zip(low, ref))


def test_close_restores_weights_device_and_mode():
    model = _cnn(dtype=torch.float32)
    model.train()
    before = {n: t.clone() for n, t in model.state_dict().items()}
    dirs = random_directions(model, count=2, kind="states", ignore="none", seed=0)
    ev = Evaluator(model, _bundle(), dirs, bn_recalibrate=True)
    ev.evaluate((2.0, -3.0))
    ev.evaluate_batch([(1.0, 1.0), (0.5, 0.5)])
    ev.close()
    assert model.training
    for n, t in model.state_dict().items():
        assert torch.equal(t, before[n]), n
    with pytest.raises(LandscapeError, match="closed"):
        ev.evaluate((0.0, 0.0))


def test_bad_inputs_raise_clear_errors():
    model = _cnn(dtype=torch.float32)
    (d,) = random_directions(model, count=1)
    with pytest.raises(LandscapeError, match="no floating entry named 'nope'"):
        Evaluator(model, _bundle(), [{"nope": torch.zeros(3)}])
    with pytest.raises(LandscapeError, match="shape"):
        Evaluator(model, _bundle(), [{"1.weight": torch.zeros(3)}])
    with pytest.raises(LandscapeError, match="test split"):
        Evaluator(model, _bundle().train, [d], metrics=("test_loss",))
    with pytest.raises(LandscapeError, match="unknown metric"):
        Evaluator(model, _bundle(), [d], metrics=("val_loss",))
    with pytest.raises(LandscapeError, match="precision"):
        Evaluator(model, _bundle(), [d], precision="fp8")
    with pytest.raises(LandscapeError, match="unknown loss"):
        Evaluator(model, _bundle(), [d], loss="hinge")


def test_fast_cross_entropy_matches_torch_including_ties_and_nan():
    from landscape.evaluate import _cross_entropy_sum_and_hits

    g = torch.Generator().manual_seed(0)
    out = torch.randn(300, 7, generator=g, dtype=torch.float64)
    out[:50] = torch.round(out[:50])  # many ties between classes
    out[50:60] = 0.0  # all classes tied, as for a dead network: argmax picks class 0
    y = torch.randint(0, 7, (300,), generator=g)
    earlier = torch.where(torch.arange(7).unsqueeze(0) < y.unsqueeze(1), 0.0, -math.inf
                          ).to(torch.float64)
    loss, hits = _cross_entropy_sum_and_hits(out.clone(), y, earlier)
    assert float(loss) == pytest.approx(
        float(nn.functional.cross_entropy(out, y, reduction="sum")), rel=1e-13)
    assert int(hits) == int((out.argmax(1) == y).sum())
    was_hit = int(out[0].argmax() == y[0])
    out[0, 3] = float("nan")  # a NaN logit: NaN loss, and the row counts as a miss
    loss, hits_nan = _cross_entropy_sum_and_hits(out.clone(), y, earlier)
    assert math.isnan(float(loss))
    assert int(hits_nan) == int(hits) - was_hit


def test_dead_network_accuracy_follows_argmax_convention():
    bundle = _bundle(n_train=50, n_test=10, features=5, classes=4, dtype=torch.float64)
    model = nn.Linear(5, 4).double()
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    zero = {"weight": torch.zeros(4, 5, dtype=torch.float64)}
    with Evaluator(model, bundle, [zero], metrics=("train_loss", "train_acc")) as ev:
        got = ev.evaluate((1.0,))
    assert got["train_loss"] == pytest.approx(math.log(4), rel=1e-15)
    assert got["train_acc"] == float((bundle.train[1] == 0).double().mean())


def _images(n_train=48, n_test=24, shape=(3, 12, 12), classes=10, seed=0,
            dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    make = lambda n: (torch.randn(n, *shape, generator=g, dtype=dtype),  # noqa: E731
                      torch.randint(0, classes, (n,), generator=g))
    return DataBundle(train=make(n_train), test=make(n_test), num_classes=classes,
                      name="images")


@pytest.mark.parametrize("name", ["lenet", "resnet20"])
def test_channels_last_equals_the_standard_layout(name):
    """NHWC evaluation gives the NCHW values (float64: the kernels differ, not the math),
    in the loop and in batched points, and leaves the model as it found it."""
    bundle = _images()
    options = {"width": 4} if name == "resnet20" else {}
    model = build_model(name, input_shape=(3, 12, 12), num_classes=10, seed=0,
                        **options).to(torch.float64).eval()
    before = {n: t.clone() for n, t in model.state_dict().items()}
    dirs = random_directions(model, count=2, seed=2)
    points = [(0.0, 0.0), (0.4, -0.3), (-1.0, 0.7)]
    metrics = ("train_loss", "train_acc", "test_loss")
    with Evaluator(model, bundle, dirs, metrics=metrics) as ev:
        ref = [ev.evaluate(p) for p in points]
    with Evaluator(model, bundle, dirs, metrics=metrics, channels_last=True) as ev:
        conv = next(t for t in model.state_dict().values() if t.ndim == 4)
        assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
        assert ev.splits["train"][0].is_contiguous(memory_format=torch.channels_last)
        loop = [ev.evaluate(p) for p in points]
        batched = ev.evaluate_batch(points)
    for r, a, b in zip(ref, loop, batched):
        for m in metrics:
            assert a[m] == pytest.approx(r[m], rel=1e-12, abs=1e-14), m
            assert b[m] == pytest.approx(r[m], rel=1e-12, abs=1e-14), m
    for n, t in model.state_dict().items():  # values and the NCHW layout are back
        assert torch.equal(t, before[n]) and t.is_contiguous(), n


def test_channels_last_needs_image_inputs():
    model = _cnn(dtype=torch.float32)
    dirs = random_directions(model, count=1)
    with pytest.raises(LandscapeError, match=r"channels-last needs image inputs .* \(96, 40\)"):
        Evaluator(model, _bundle(), dirs, channels_last=True)


def test_tf32_is_refused_off_cuda_with_a_clear_error():
    model = _cnn(dtype=torch.float32)
    dirs = random_directions(model, count=1)
    with pytest.raises(LandscapeError, match="tf32 needs a CUDA GPU.*runs on cpu"):
        Evaluator(model, _bundle(), dirs, precision="tf32", device="cpu")
    with Evaluator(model, _bundle(), dirs) as ev:
        with pytest.raises(LandscapeError, match="tf32 needs a CUDA GPU"):
            ev.evaluate((0.5,), precision="tf32")
        assert ev.precision_error([(0.0,), (1.0,)]) == {"train_loss": 0.0, "train_acc": 0.0}


def test_float32_mode_sets_and_restores_the_cuda_switches():
    from landscape._util import _float32_switches, float32_mode

    switches = _float32_switches()
    if not switches:
        pytest.skip("this torch has no fp32_precision switches")
    before = [s.fp32_precision for s in switches]
    with float32_mode("tf32"):
        assert [s.fp32_precision for s in switches] == ["tf32"] * len(switches)
        with float32_mode("ieee"):
            assert [s.fp32_precision for s in switches] == ["ieee"] * len(switches)
        assert [s.fp32_precision for s in switches] == ["tf32"] * len(switches)
    assert [s.fp32_precision for s in switches] == before
    with float32_mode("tf32", enabled=False):
        assert [s.fp32_precision for s in switches] == before
    with pytest.raises(RuntimeError), float32_mode("ieee"):  # restored on errors too
        raise RuntimeError("boom")
    assert [s.fp32_precision for s in switches] == before
    with pytest.raises(LandscapeError, match="unknown float32 mode"):
        with float32_mode("fp16"):
            pass


def test_directions_that_do_not_fit_leave_the_model_as_it_was():
    model = build_model("lenet", input_shape=(3, 12, 12), num_classes=10, seed=0).train()
    with pytest.raises(LandscapeError, match="no floating entry named 'nope'"):
        Evaluator(model, _images(dtype=torch.float32), [{"nope": torch.zeros(3)}],
                  channels_last=True)
    assert model.training
    assert all(t.is_contiguous() for t in model.state_dict().values())


def test_numerics_on_a_cuda_device_set_the_float32_mode_of_each_precision():
    """The CUDA branch without a GPU: an evaluator whose device reads as cuda switches TF32
    off for fp32 and bf16 and on for tf32 while it evaluates, and back afterwards."""
    import warnings

    from landscape._util import _float32_switches

    switches = _float32_switches()
    if not switches:
        pytest.skip("this torch has no fp32_precision switches")
    before = [s.fp32_precision for s in switches]
    model = _cnn(dtype=torch.float32)
    ev = Evaluator(model, _bundle(), random_directions(model, count=1), device="cpu")
    ev.device = torch.device("cuda")  # only the settings are exercised, nothing runs there
    seen = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # autocast warns that CUDA is not available
        for precision in ("fp32", "tf32", "bf16"):
            with ev._numerics(precision):
                seen[precision] = {s.fp32_precision for s in switches}
    assert seen == {"fp32": {"ieee"}, "tf32": {"tf32"}, "bf16": {"ieee"}}
    assert [s.fp32_precision for s in switches] == before
    ev.device = torch.device("cpu")
    ev.close()


@pytest.mark.parametrize("coords", [(0.3, -0.7), (0.0, 1.5), (0.0, 0.0), (-2.0, 0.0)])
def test_set_point_is_the_same_bits_as_copy_then_add(coords):
    """The first direction's step written over the base in one pass gives exactly the bits
    of copying the base and adding each direction in place; a direction that covers only
    some entries (here the first) falls back to the copy."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3))
    base = {n: t.detach().clone() for n, t in model.state_dict().items()}
    full = random_directions(model, count=2, seed=1)
    partial = [{n: t for n, t in full[0].items() if n.startswith("0.")}, full[1]]
    x, y = torch.randn(4, 7), torch.tensor([0, 1, 2, 0])
    for dirs in (full, partial):
        ev = Evaluator(model, (x, y), dirs, metrics=("train_loss",))
        ev.set_point(coords)
        for name, value in model.state_dict().items():
            want = base[name].clone()
            for c, d in zip(coords, dirs):
                if c != 0.0 and name in d:
                    want.add_(d[name], alpha=c)
            assert torch.equal(value, want), (name, coords)
        ev.close()
