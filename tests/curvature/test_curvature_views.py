"""Curvature-aligned directions, warm-started top eigenvalues, per-batch spread and the
sharpness tracking hook of training, against dense Hessians of tiny float64 models."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from cli_helpers import one_line_error

from landscape.directions import hessian_directions, random_directions
from landscape.errors import LandscapeError
from landscape.hessian import (dense_hessian, directional_curvature, hessian_eigenvalues,
                               per_batch_top_eigenvalue, top_eigenpair)
from landscape.models import build_model
from landscape.params import flatten
from landscape.sharpness import rescale_relu_layers


def _dense_top(model, data, k=2):
    vals, vecs = torch.linalg.eigh(dense_hessian(model, data))
    return vals.flip(0)[:k].numpy(), vecs.flip(1)[:, :k].numpy()


# ----------------------------------------------------------------------------- directions

def test_eigenvector_slices_curve_as_the_dense_eigenvalues(tiny):
    """Along each unit top eigenvector the second difference of the loss at 0 is the dense
    Hessian's eigenvalue (float64, h = 1e-4: relative 1e-5; the issue asks for 1%). A longer
    step crosses ReLU kinks: at h = 1e-3 the second slice was 2.3x off here."""
    model, data = tiny
    want, vecs = _dense_top(model, data)
    hd = hessian_directions(model, data, count=2)
    np.testing.assert_allclose(hd.eigenvalues, want, rtol=1e-8)
    assert np.all(hd.residuals < 1e-6 * want)
    for k, d in enumerate(hd.directions):
        flat = flatten(d)
        assert float(flat.norm()) == pytest.approx(1.0, rel=1e-12)
        assert abs(float(flat @ torch.from_numpy(vecs[:, k]))) == pytest.approx(1.0, rel=1e-8)
        assert directional_curvature(model, data, flat, step=1e-4) == pytest.approx(want[k],
                                                                        rel=1e-5)
    recipe = hd.recipe()
    assert recipe["type"] == "hessian" and recipe["unit"] == "unit parameter-space norm"
    assert recipe["eigenvalues"] == pytest.approx(list(want), rel=1e-8)


def test_eigenvector_directions_are_seeded_and_signed(tiny):
    model, data = tiny
    a = hessian_directions(model, data, count=1, seed=0).directions[0]
    b = hessian_directions(model, data, count=1, seed=5).directions[0]
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=0, atol=1e-8)  # the sign is fixed
    flat = flatten(a)
    assert float(flat[flat.abs().argmax()]) > 0


def test_filter_normalized_eigenvector(tiny):
    model, data = tiny
    (d,) = hessian_directions(model, data, count=1, norm="filter").directions
    weights = dict(model.named_parameters())
    for n, t in d.items():
        if t.ndim == 1:
            assert not t.any()  # biases zeroed, as for random directions
        else:
            torch.testing.assert_close(t.norm(dim=1), weights[n].detach().norm(dim=1))
    with pytest.raises(LandscapeError):
        hessian_directions(model, data, norm="layer")


def test_eigenvector_slices_change_under_rescaling_filter_normalized_do_not(tiny):
    """Dinh et al.: rescaling layers 1 and 3 by 10 and 1/10 keeps the function. The raw
    eigenvector slice's curvature follows the raw eigenvalue and changes; the
    filter-normalized random slice is the same curve (float64: relative 1e-9)."""
    model, data = tiny
    scaled = rescale_relu_layers(copy.deepcopy(model), "1", "3", 10.0)
    raw = [directional_curvature(m, data, flatten(hessian_directions(m, data).directions[0]))
           for m in (model, scaled)]
    assert abs(raw[1] / raw[0] - 1) > 1.0
    curves = []
    for m in (model, scaled):
        (d,) = random_directions(m, count=1, norm="filter", seed=3)
        curves.append([directional_curvature(m, data, flatten(d), step=s) for s in (0.1, 0.3)])
    np.testing.assert_allclose(curves[1], curves[0], rtol=1e-9)


# ----------------------------------------------------------------------------- top eigenpair

def test_top_eigenpair_cold_and_warm(tiny):
    model, data = tiny
    want, vecs = _dense_top(model, data, 1)
    cold = top_eigenpair(model, data, tol=1e-6)
    assert cold.converged and cold.value == pytest.approx(want[0], rel=1e-9)
    warm = top_eigenpair(model, data, start=vecs[:, 0], tol=1e-6)
    assert warm.n_products <= 2 and warm.value == pytest.approx(want[0], rel=1e-12)
    with pytest.raises(LandscapeError):
        top_eigenpair(model, data, start=np.ones(3))


# ----------------------------------------------------------------------------- per batch

def test_per_batch_spread_shrinks_as_the_batch_grows(mnist1d_small):
    """Seeded case: 6 disjoint batches of 8 examples versus 2 of 128 on a float64 MLP; the
    full-data value agrees with the dense Hessian to 1e-4 (Lanczos residual 1e-3)."""
    model = build_model("mlp", mnist1d_small, seed=0, width=8).double().eval()
    x, y = mnist1d_small.train[0].double(), mnist1d_small.train[1]
    small = per_batch_top_eigenvalue(model, (x, y), 6, 8, seed=0, full=False)
    large = per_batch_top_eigenvalue(model, (x, y), 2, 128, seed=0)
    assert small.disjoint and large.disjoint and len(small.values) == 6
    assert large.std < 0.5 * small.std
    want = float(torch.linalg.eigvalsh(dense_hessian(model, (x, y)))[-1])
    assert large.full == pytest.approx(want, rel=1e-4)
    assert small.to_dict()["full"] is None
    with pytest.raises(LandscapeError):
        per_batch_top_eigenvalue(model, (x, y), 2, 10_000)


# ----------------------------------------------------------------------------- tracking

def test_tracking_equals_a_fresh_lanczos_at_each_checkpoint(mnist1d_small, tmp_path):
    """``track_eigenvalues``: each recorded lambda_max equals eigsh at tol 1e-8 on the
    checkpoint written at that epoch, to 1e-4 (relative); warm starts need few products."""
    from landscape.checkpoint import load_checkpoint
    from landscape.train import TrainConfig, train

    model = build_model("mlp", mnist1d_small, seed=0, width=8)
    config = TrainConfig(lr=0.05, momentum=0.0, batch_size="full", epochs=4,
                         track_eigenvalues=2, checkpoint_every=1, progress=False)
    result = train(model, mnist1d_small, config, out_dir=tmp_path)
    tracked = [e for e in result.history if np.isfinite(e["lambda_max"])]
    assert [e["epoch"] for e in tracked] == [2, 4]
    assert all(set(e) >= {"lambda_max", "lambda_max_residual"} for e in result.history)
    for entry in tracked:
        ckpt, _ = load_checkpoint(tmp_path / "checkpoints" / f"epoch_{entry['epoch']:04d}.pt")
        fresh = hessian_eigenvalues(ckpt, mnist1d_small.train, k=1, tol=1e-8)
        assert entry["lambda_max"] == pytest.approx(float(fresh.values[-1]), rel=1e-4)
    assert tracked[-1]["lambda_max_products"] <= 10  # warm-started (cold: 20 here)
    with pytest.raises(LandscapeError):
        TrainConfig(track_eigenvalues=-1).validate()


def test_stability_thresholds():
    from landscape.train import stability_threshold

    assert stability_threshold("sgd", 0.1) == pytest.approx(20.0)
    assert stability_threshold("sgd", 0.1, 0.9) == pytest.approx(38.0)
    assert stability_threshold("sgd", 0.1, 0.9, nesterov=True) == pytest.approx(3.8 / 0.28)
    assert stability_threshold("adam", 0.1) is None


# ----------------------------------------------------------------------------- command line

def _cli(*args):
    from click.testing import CliRunner

    from landscape_cli.main import cli
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_cli_train_tracks_eigenvalues(tmp_path):
    import json

    out = tmp_path / "run"
    res = _cli("train", "--model", "mlp", "--train-subset", "128", "--test-subset", "64",
               "--epochs", "3", "--batch-size", "full", "--lr", "0.1", "--momentum", "0",
               "--track-eigenvalues", "2", "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    assert "stability threshold 20" in res.output
    epochs = json.loads((out / "history.json").read_text())["epochs"]
    # epochs without a measurement hold NaN, written as null (strict JSON)
    assert [e["epoch"] for e in epochs if e["lambda_max"] is not None] == [2, 3]
    assert "lambda_max" in (out / "history.csv").read_text().splitlines()[0]
    bad = _cli("train", "--track-eigenvalues", "-1", "--out", tmp_path / "bad")
    assert bad.exit_code != 0 and not (tmp_path / "bad").exists()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "run"
    res = _cli("train", "--model", "mlp", "--width", "8", "--train-subset", "128",
               "--test-subset", "64", "--epochs", "2", "--batch-size", "full", "--out", out,
               "--quiet")
    assert res.exit_code == 0, res.output
    return out / "model.pt"


def test_cli_hessian_per_batch(tiny_checkpoint, tmp_path):
    import json

    spec, fig = tmp_path / "spec.json", tmp_path / "spread.png"
    res = _cli("hessian", tiny_checkpoint, "--top-k", "0", "--per-batch", "4", "--batch-size",
               "8,32", "--out", spec, "--figure", fig, "--quiet")
    assert res.exit_code == 0, res.output
    rows = json.loads(spec.read_text())["per_batch"]
    assert [r["batch_size"] for r in rows] == [8, 32] and len(rows[0]["values"]) == 4
    assert rows[0]["full"] == rows[1]["full"] and rows[1]["disjoint"]
    assert fig.stat().st_size > 0 and "full data (128 examples)" in res.output
    for extra in (["--per-batch", "4"], ["--batch-size", "8"],
                  ["--per-batch", "2", "--batch-size", "x"],
                  ["--per-batch", "2", "--batch-size", "8", "--figure", tmp_path / "f.txt"]):
        res = _cli("hessian", tiny_checkpoint, "--top-k", "0", *extra, "--out",
                   tmp_path / "bad.json")
        one_line_error(res, res.exit_code)
        assert not (tmp_path / "bad.json").exists()


def test_cli_surface_along_hessian_eigenvectors(tiny_checkpoint, tmp_path):
    from landscape.directions import load_directions
    from landscape.plot2d import axis_labels
    from landscape.store import load_surface

    out = tmp_path / "eig.h5"
    res = _cli("surface", tiny_checkpoint, "--directions", "hessian", "--x", "-0.2:0.2:5",
               "--y", "-0.2:0.2:5", "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    dirs, info = load_directions(tmp_path / "eig.directions.h5")
    prov = info["provenance"]
    assert prov["type"] == "hessian" and prov["norm"] == "none" and len(dirs) == 2
    assert prov["eigenvalues"][0] >= prov["eigenvalues"][1] > 0
    assert max(prov["residuals"]) < 1e-4 * prov["eigenvalues"][0]
    norms = [float(torch.sqrt(sum((t.double() ** 2).sum() for t in d.values()))) for d in dirs]
    assert norms == pytest.approx([1.0, 1.0], rel=1e-5)
    xl, yl = axis_labels(load_surface(out))
    assert xl.startswith("top Hessian eigenvector") and "unit norm" in xl and "#2" in yl
    for extra in (["--norm", "layer"], ["--kind", "states"]):
        bad = _cli("surface", tiny_checkpoint, "--directions", "hessian", *extra, "--out",
                   tmp_path / "bad.h5")
        one_line_error(bad)
        assert not (tmp_path / "bad.h5").exists()


def test_cli_plot_log_needs_a_positive_vmin_and_draws_round_levels(tmp_path, monkeypatch):
    from landscape import figures as plot2d
    from landscape.store import save_surface
    from landscape.surface import Surface

    x = np.linspace(-1, 1, 15)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    loss = 0.003 + 40 * (xx ** 2 + yy ** 2)
    path = save_surface(tmp_path / "s.h5", Surface(x=x, y=x, metrics={"train_loss": loss},
                                                   done=np.ones(loss.shape, bool)))
    drawn = []
    real = plot2d.plot_contours
    monkeypatch.setattr(plot2d, "plot_contours",
                        lambda *a, **k: drawn.append(real(*a, **k)) or drawn[-1])
    res = _cli("plot", path, "--log", "--vmin", "0.01", "--out", tmp_path / "c.png")
    assert res.exit_code == 0, res.output
    (cs,) = [c for c in drawn[0].axes[0].collections if hasattr(c, "levels")][:1]
    assert cs.norm.vmin == 0.01 and all(plot2d._is_round(v) for v in cs.levels)
    labels = [t.get_text() for t in drawn[0].axes[0].texts]
    assert labels and all(plot2d._is_round(float(t)) for t in labels)
    res = _cli("plot", path, "--log", "--vmin", "0", "--out", tmp_path / "bad.png")
    assert res.exit_code != 0 and "positive --vmin" in res.output
    assert not (tmp_path / "bad.png").exists()


# ----------------------------------------------------------------------------- spectra

def test_one_kernel_width_for_every_density_in_a_figure():
    """Two spectra of very different spans (as a flat and a sharp minimum give): one sigma,
    0.4% of the joint span, one grid, each density integrating to 1; the study's figure step
    draws both with it."""
    from landscape.hessian import _smooth, common_densities
    from landscape.compare import _shared_densities

    narrow = (np.array([0.0, 0.5, 2.3]), np.array([0.6, 0.3, 0.1]))
    wide = (np.array([-0.1, 3.0, 20.0]), np.array([0.7, 0.2, 0.1]))
    own = [_smooth(n, w, None, 100)[2] for n, w in (narrow, wide)]
    assert own[1] > 5 * own[0]  # smoothed alone, the kernels would differ this much
    dens, grid, sigma = common_densities([narrow, wide])
    assert sigma == pytest.approx(0.004 * 20.1)
    for d in dens:
        assert np.trapezoid(d, grid) == pytest.approx(1.0, rel=1e-9)
    stored = [{"grid": [0, 1], "density": [1, 1], "sigma": s, "nodes": n.tolist(),
               "weights": w.tolist()} for s, (n, w) in zip(own, (narrow, wide))]
    pairs, shared = _shared_densities(stored)
    assert shared == pytest.approx(sigma) and np.array_equal(pairs[0][0], pairs[1][0])
