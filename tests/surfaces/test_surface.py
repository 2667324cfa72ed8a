"""compute_surface: closed forms, independent evaluation, grids, seeds, shards, NaN, Hessian."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

import landscape
from landscape import build_model
from landscape.data import DataBundle
from landscape.directions import random_directions
from landscape.errors import LandscapeError
from landscape.surface import (Surface, SurfaceOptions, compute_surface, select_points,
                               summary_line)
from landscape.train import evaluate_split, loss_function

from closed_forms import LogOfFirst, Quadratic, mean_output


def _pair(n=4):
    return torch.zeros(n, 2, dtype=torch.float64), torch.zeros(n, dtype=torch.long)


def _bundle(n_train=80, n_test=40, features=20, classes=4, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    make = lambda n: (torch.randn(n, features, generator=g, dtype=dtype),  # noqa: E731
                      torch.randint(0, classes, (n,), generator=g))
    return DataBundle(train=make(n_train), test=make(n_test), num_classes=classes,
                      name="synthetic")


def _mlp(dtype=torch.float32, seed=0, activation="relu"):
    return build_model("mlp", input_shape=(20,), num_classes=4, width=10, depth=2,
                       activation=activation, seed=seed).to(dtype).eval()


def test_quadratic_2d_surface_on_a_non_square_grid_without_zero():
    g = torch.Generator().manual_seed(1)
    m = torch.randn(6, 6, generator=g, dtype=torch.float64)
    model = Quadratic(m @ m.T + torch.eye(6, dtype=torch.float64),
                      torch.randn(2, 3, generator=g, dtype=torch.float64))
    d1, d2 = random_directions(model, count=2, ignore="none", seed=0)
    x, y = np.linspace(0.5, 2.0, 7), np.linspace(-3.0, -1.0, 4)
    surface = compute_surface(model, _pair(), [d1, d2], x=x, y=y,
                              options=SurfaceOptions(metrics=("train_loss",), loss=mean_output,
                                                     progress=False))
    assert isinstance(surface, Surface) and surface.shape == (7, 4) and surface.complete
    a = model.a.numpy()
    t, u, v = (z.detach().reshape(-1).numpy() for z in (model.theta, d1["theta"], d2["theta"]))
    expected = np.array([[0.5 * (t + xi * u + yj * v) @ a @ (t + xi * u + yj * v)
                          for yj in y] for xi in x])
    np.testing.assert_allclose(surface.metrics["train_loss"], expected, rtol=1e-12, atol=0)
    assert torch.equal(model.theta.detach().reshape(-1), torch.from_numpy(t))  # restored


def test_quadratic_1d_surface_is_the_closed_form_parabola():
    g = torch.Generator().manual_seed(2)
    m = torch.randn(6, 6, generator=g, dtype=torch.float64)
    model = Quadratic(m + m.T, torch.randn(2, 3, generator=g, dtype=torch.float64))
    (d,) = random_directions(model, count=1, ignore="none", seed=4)
    x = np.linspace(-2.0, -0.5, 9)
    surface = compute_surface(model, _pair(), [d], x=x,
                              options=SurfaceOptions(metrics=("train_loss",), loss=mean_output,
                                                     progress=False))
    a = model.a.numpy()
    t, u = model.theta.detach().reshape(-1).numpy(), d["theta"].reshape(-1).numpy()
    # 0.5 (t + s u)^T A (t + s u) = c0 + c1 s + c2 s^2
    c0, c1, c2 = 0.5 * t @ a @ t, u @ a @ t, 0.5 * u @ a @ u
    assert surface.y is None and surface.shape == (9,)
    np.testing.assert_allclose(surface.metrics["train_loss"], c0 + c1 * x + c2 * x ** 2,
                               rtol=1e-12, atol=1e-12)


def test_mse_surface_of_a_linear_model_matches_closed_form():
    bundle = _bundle(n_train=30, n_test=10, features=5, classes=3, dtype=torch.float64)
    model = nn.Linear(5, 3).double()
    w0, b0 = model.weight.detach().numpy().copy(), model.bias.detach().numpy().copy()
    dirs = random_directions(model, count=2, ignore="none", seed=1)
    x, y = np.linspace(-1, 1, 3), np.linspace(0.2, 0.6, 2)
    surface = compute_surface(model, bundle, dirs, x, y,
                              options=SurfaceOptions(metrics=("test_loss",), loss="mse",
                                                     progress=False))
    xt, yt = (t.numpy() for t in bundle.test)
    for i, a in enumerate(x):
        for j, b in enumerate(y):
            w = w0 + a * dirs[0]["weight"].numpy() + b * dirs[1]["weight"].numpy()
            bias = b0 + a * dirs[0]["bias"].numpy() + b * dirs[1]["bias"].numpy()
            want = np.mean((xt @ w.T + bias - np.eye(3)[yt]) ** 2)
            assert surface.metrics["test_loss"][i, j] == pytest.approx(want, rel=1e-12)


def test_every_grid_value_equals_an_independent_evaluation():
    bundle = _bundle(dtype=torch.float64)
    model = _mlp(torch.float64)
    theta = {n: t.detach().clone() for n, t in model.state_dict().items()}
    dirs = landscape.directions.random_directions(model, count=2, seed=0)
    x, y = np.linspace(-1.0, 0.5, 4), np.linspace(0.25, 1.0, 3)
    metrics = ("train_loss", "train_acc", "test_loss", "test_acc")
    surface = compute_surface(model, bundle, dirs, x, y,
                              options=SurfaceOptions(metrics=metrics, progress=False))
    loss_fn = loss_function("cross_entropy", 4)
    for i, a in enumerate(x):
        for j, b in enumerate(y):
            fresh = _mlp(torch.float64, seed=99)
            fresh.load_state_dict({n: t + a * dirs[0][n] + b * dirs[1][n] if n in dirs[0]
                                   else t for n, t in theta.items()})
            for split in ("train", "test"):
                loss, acc = evaluate_split(fresh, *bundle.split(split), loss_fn)
                assert surface.metrics[f"{split}_loss"][i, j] == pytest.approx(loss, rel=1e-12)
                assert surface.metrics[f"{split}_acc"][i, j] == acc


def test_same_seed_gives_bit_identical_surfaces():
    bundle = _bundle()
    runs = []
    for _ in range(2):
        model = _mlp()
        dirs = random_directions(model, count=2, seed=3)
        runs.append(compute_surface(model, bundle, dirs, np.linspace(-1, 1, 5),
                                    np.linspace(-1, 1, 3), options=SurfaceOptions(progress=False)))
    for m in runs[0].metrics:
        assert np.array_equal(runs[0].metrics[m], runs[1].metrics[m])
    other = compute_surface(_mlp(), bundle, random_directions(_mlp(), seed=4),
                            np.linspace(-1, 1, 5), np.linspace(-1, 1, 3),
                            options=SurfaceOptions(progress=False))
    assert not np.array_equal(other.metrics["train_loss"], runs[0].metrics["train_loss"])


def test_shards_partition_the_grid_and_reassemble_the_full_surface():
    bundle = _bundle()
    model = _mlp()
    dirs = random_directions(model, count=2, seed=0)
    x, y = np.linspace(-1, 1, 4), np.linspace(-0.5, 0.5, 5)
    full = compute_surface(model, bundle, dirs, x, y, options=SurfaceOptions(progress=False))
    shards = [compute_surface(model, bundle, dirs, x, y, options=SurfaceOptions(progress=False),
                              points=select_points(full.done.size, rank=r, world_size=3))
              for r in range(3)]
    assert sum(s.done.sum() for s in shards) == full.done.size
    assert not (shards[0].done & shards[1].done).any()
    merged = np.full(full.shape, np.nan)
    for s in shards:
        merged[s.done] = s.metrics["train_loss"][s.done]
        assert np.isnan(s.metrics["train_loss"][~s.done]).all()
    assert np.array_equal(merged, full.metrics["train_loss"])
    part = compute_surface(model, bundle, dirs, x, y, options=SurfaceOptions(progress=False),
                           points=[0, 7, 19])
    assert part.done.reshape(-1).nonzero()[0].tolist() == [0, 7, 19]
    assert part.metrics["train_loss"][1, 2] == full.metrics["train_loss"][1, 2]
    assert select_points(10, np.array([True] + [False] * 9), rank=1, world_size=2) == [1, 3, 5,
                                                                                        7, 9]
    with pytest.raises(LandscapeError, match="outside the grid"):
        compute_surface(model, bundle, dirs, x, y, options=SurfaceOptions(progress=False),
                        points=[20])


def test_batched_points_equal_the_loop_through_compute_surface():
    bundle = _bundle(dtype=torch.float64)
    model = _mlp(torch.float64)
    dirs = random_directions(model, count=2, seed=0)
    x, y = np.linspace(-1, 1, 5), np.linspace(-1, 1, 3)
    loop = compute_surface(model, bundle, dirs, x, y,
                           options=SurfaceOptions(progress=False, batch_points=1))
    batched = compute_surface(model, bundle, dirs, x, y,
                              options=SurfaceOptions(progress=False, batch_points=4))
    np.testing.assert_allclose(batched.metrics["train_loss"], loop.metrics["train_loss"],
                               rtol=1e-12)
    assert np.array_equal(batched.metrics["train_acc"], loop.metrics["train_acc"])


def test_nan_and_inf_points_are_stored_and_counted():
    model = LogOfFirst()
    direction = {"w": torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)}
    x = np.linspace(-2.0, 1.0, 7)  # 1 + x: -1, -0.5, 0, 0.5, 1, 1.5, 2
    surface = compute_surface(model, _pair(), [direction], x,
                              options=SurfaceOptions(metrics=("train_loss",), loss=mean_output,
                                                     progress=False))
    values = surface.metrics["train_loss"]
    assert surface.complete
    assert np.isnan(values[:2]).all() and values[2] == -math.inf
    np.testing.assert_allclose(values[3:], np.log(1 + x[3:]), rtol=1e-15)
    assert surface.nonfinite == 3
    s = surface.summary()
    assert s["nonfinite"] == 3 and s["min"] == pytest.approx(math.log(0.5))
    assert s["argmin"] == (pytest.approx(-0.5),)
    assert "3 NaN/inf" in summary_line(surface)


def test_progress_bar_reports_points(capsys):
    model = _mlp()
    compute_surface(model, _bundle(), random_directions(model, count=1), np.linspace(-1, 1, 4),
                    options=SurfaceOptions(progress=True))
    err = capsys.readouterr().err
    assert "surface" in err and "0/4" in err and "pt/s" in err  # count, rate (and time left)


def test_bad_arguments():
    model = _mlp()
    (d,) = random_directions(model, count=1)
    bundle = _bundle()
    with pytest.raises(LandscapeError, match="needs 2 directions"):
        compute_surface(model, bundle, [d], np.linspace(-1, 1, 3), np.linspace(-1, 1, 3))
    with pytest.raises(LandscapeError, match="non-finite"):
        compute_surface(model, bundle, [d], [0.0, float("nan")])
    with pytest.raises(LandscapeError, match="1-D"):
        compute_surface(model, bundle, [d], np.zeros((2, 2)))
    with pytest.raises(LandscapeError, match="no metrics"):
        compute_surface(model, bundle, [d], [0.0, 1.0], options=SurfaceOptions(metrics=()))


def _dense_extremes(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Exact extreme eigenvalues of the cross-entropy Hessian via torch.func.hessian + eigh."""
    from torch.func import functional_call, hessian

    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])

    def loss(vec):
        params, start = {}, 0
        for n, s in zip(names, shapes):
            k = int(np.prod(s))
            params[n] = vec[start:start + k].view(s)
            start += k
        return nn.functional.cross_entropy(functional_call(model, params, (x,)), y)

    eig = torch.linalg.eigvalsh(hessian(loss)(flat))
    return float(eig[-1]), float(eig[0])


def test_hessian_metrics_match_dense_eigenvalues():
    hessian = pytest.importorskip("landscape.hessian")
    if not hasattr(hessian, "extreme_eigenvalues"):
        pytest.skip("landscape.hessian.extreme_eigenvalues is not there yet")
    bundle = _bundle(n_train=40, features=6, classes=3, dtype=torch.float64)
    model = build_model("mlp", input_shape=(6,), num_classes=3, width=4, depth=1,
                        activation="tanh").double().eval()
    (d,) = random_directions(model, count=1, seed=0)
    x = np.array([-0.5, 0.0, 0.7])
    surface = compute_surface(model, bundle, [d], x,
                              options=SurfaceOptions(metrics=("train_loss",), hessian=True,
                                                     progress=False, seed=0))
    assert list(surface.metrics) == ["train_loss", "eig_max", "eig_min"]
    for i, a in enumerate(x):
        probe = copy.deepcopy(model)
        with torch.no_grad():
            for n, p in probe.named_parameters():
                p.add_(d[n], alpha=float(a))
        top, bottom = _dense_extremes(probe, *bundle.train)
        # extreme_eigenvalues stops when both Ritz residuals are below 1e-3 x the spread
        tol = 1e-3 * (top - bottom)
        assert surface.metrics["eig_max"][i] == pytest.approx(top, abs=tol)
        assert surface.metrics["eig_min"][i] == pytest.approx(bottom, abs=tol)
    assert surface.metrics["eig_max"][0] != surface.metrics["eig_max"][2]


def test_channels_last_surface_is_recorded_and_resumed_only_with_the_same_layout(tmp_path):
    from landscape.errors import StoreError
    from landscape.store import load_surface

    g = torch.Generator().manual_seed(0)
    images = (torch.randn(32, 1, 12, 12, generator=g), torch.randint(0, 4, (32,), generator=g))
    model = build_model("lenet", input_shape=(1, 12, 12), num_classes=4, seed=0).eval()
    dirs = random_directions(model, count=2, seed=0)
    x, y = np.linspace(-1, 1, 3), np.linspace(-1, 1, 2)
    plain = compute_surface(model, images, dirs, x, y, options=SurfaceOptions(progress=False))
    store = tmp_path / "nhwc.h5"
    nhwc = compute_surface(model, images, dirs, x, y,
                           options=SurfaceOptions(progress=False, channels_last=True), out=store,
                           points=[0, 1, 2])
    assert load_surface(store).provenance["identity"]["channels_last"] is True
    with pytest.raises(StoreError, match="channels-last memory format"):
        compute_surface(model, images, dirs, x, y, options=SurfaceOptions(progress=False),
                        out=store, resume=True)
    nhwc = compute_surface(model, images, dirs, x, y,
                           options=SurfaceOptions(progress=False, channels_last=True), out=store,
                           resume=True)
    assert nhwc.complete
    np.testing.assert_allclose(nhwc.metrics["train_loss"], plain.metrics["train_loss"],
                               rtol=1e-5)  # float32: kernels for NHWC round differently
    assert plain.provenance["identity"]["channels_last"] is False
