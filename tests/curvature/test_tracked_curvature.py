"""Eigenvalue tracking of the GGN, the Fisher and the empirical Fisher during training: the
recorded values against a fresh solve on the checkpoints, the name in history.json, the
threshold only where it applies, and bad settings refused in one line."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from cli_helpers import one_line_error

from landscape.checkpoint import load_checkpoint
from landscape.curvature import HessianOptions, hessian_eigenvalues, top_eigenpair
from landscape.errors import LandscapeError
from landscape.models import build_model
from landscape.train import TrainConfig, train
from landscape_cli.main import cli


def _cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("curvature", ["ggn", "empirical-fisher"])
def test_tracked_matrix_equals_a_fresh_solve(mnist1d_small, tmp_path, curvature):
    """Each recorded lambda_max is the top eigenvalue of the named matrix (eigsh at tol 1e-8
    on the checkpoint of that epoch, to 1e-4), history.json names the matrix, and the values
    are not the Hessian's."""
    model = build_model("mlp", mnist1d_small, seed=0, width=8)
    config = TrainConfig(lr=0.05, momentum=0.0, batch_size="full", epochs=2,
                         track_eigenvalues=1, track_curvature=curvature,
                         checkpoint_every=1, progress=False)
    result = train(model, mnist1d_small, config, out_dir=tmp_path)
    record = json.loads((tmp_path / "history.json").read_text())
    assert record["tracked"]["curvature"] == curvature
    for entry in result.history:
        ckpt, _ = load_checkpoint(tmp_path / "checkpoints" / f"epoch_{entry['epoch']:04d}.pt")
        fresh = hessian_eigenvalues(ckpt, mnist1d_small.train, k=1, tol=1e-8,
                                    options=HessianOptions(curvature=curvature))
        hessian = hessian_eigenvalues(ckpt, mnist1d_small.train, k=1, tol=1e-8)
        assert entry["lambda_max"] == pytest.approx(float(fresh.values[-1]), rel=1e-4)
        assert entry["lambda_max"] != pytest.approx(float(hessian.values[-1]), rel=1e-3)


def test_top_eigenpair_of_a_linear_model_is_the_same_for_hessian_and_ggn(mnist1d_small):
    """A linear model under cross-entropy has GGN = Hessian: the warm-startable solver gives
    the same top eigenvalue for both (to 1e-6); an unknown matrix is refused."""
    from torch import nn

    x, y = mnist1d_small.train
    model = nn.Linear(x.shape[1], 10)
    values = [top_eigenpair(model, (x, y), tol=1e-8, max_products=200, curvature=c).value
              for c in ("hessian", "ggn", "fisher")]
    assert values[1] == pytest.approx(values[0], rel=1e-6)
    assert values[2] == pytest.approx(values[0], rel=1e-6)
    with pytest.raises(LandscapeError, match="unknown curvature"):
        top_eigenpair(model, (x, y), curvature="gnn")


def test_bad_tracked_curvature_is_refused():
    with pytest.raises(LandscapeError, match="tracked curvature"):
        TrainConfig(track_eigenvalues=1, track_curvature="fischer").validate()
    with pytest.raises(LandscapeError, match="needs eigenvalue tracking"):
        TrainConfig(track_curvature="ggn").validate()


def test_cli_tracks_the_named_matrix_and_its_threshold(tmp_path):
    """The GGN is judged against the stability threshold, the empirical Fisher is not; bad
    values are one Error line with nothing written."""
    common = ("--model", "mlp", "--train-subset", "128", "--test-subset", "64", "--epochs",
              "2", "--batch-size", "full", "--lr", "0.1", "--momentum", "0",
              "--track-eigenvalues", "1", "--quiet")
    ggn = _cli("train", *common, "--track-curvature", "ggn", "--out", tmp_path / "ggn")
    assert ggn.exit_code == 0, ggn.output
    assert "top GGN eigenvalue" in ggn.output and "stability threshold 20" in ggn.output
    ef = _cli("train", *common, "--track-curvature", "empirical-fisher", "--out",
              tmp_path / "ef")
    assert ef.exit_code == 0, ef.output
    assert "top empirical Fisher eigenvalue" in ef.output and "threshold" not in ef.output
    history = json.loads((tmp_path / "ef" / "history.json").read_text())
    assert history["tracked"] == {"curvature": "empirical-fisher", "matrix": "empirical Fisher"}
    assert all(e["lambda_max"] is not None and np.isfinite(e["lambda_max"])
               for e in history["epochs"])
    bad = _cli("train", *common, "--track-curvature", "fischer", "--out", tmp_path / "bad")
    assert "fischer" in one_line_error(bad, 2) and not (tmp_path / "bad").exists()
    lone = _cli("train", "--model", "mlp", "--train-subset", "128", "--epochs", "1",
                "--track-curvature", "ggn", "--out", tmp_path / "lone", "--quiet")
    assert "needs eigenvalue tracking" in one_line_error(lone)
    assert not (tmp_path / "lone").exists()


def test_plot_sharpness_names_the_matrix_and_draws_thresholds_where_they_apply(
        tmp_path, monkeypatch):
    """plot --kind sharpness: the axis names the tracked matrix; the threshold line is drawn
    for the Hessian (also a history that names none) and the GGN, not for the Fisher and the
    empirical Fisher; mixed matrices are named in each run's legend entry."""
    import landscape.figures as figures

    drawn = {}
    original = figures.plot_sharpness

    def spy(histories, **kwargs):
        drawn.update(kwargs)
        return original(histories, **kwargs)

    monkeypatch.setattr(figures, "plot_sharpness", spy)
    runs = {name: _history(tmp_path / name, curvature)
            for name, curvature in [("old", None), ("ggn", "ggn"), ("fisher", "fisher"),
                                    ("ef", "empirical-fisher")]}
    res = _cli("plot", *runs.values(), "--kind", "sharpness", "--out", tmp_path / "all.png")
    assert res.exit_code == 0, res.output
    assert drawn["matrices"] == ["Hessian", "GGN", "Fisher", "empirical Fisher"]
    limits = drawn["thresholds"]
    assert limits[0] == pytest.approx(38.0) and limits[1] == pytest.approx(38.0)
    assert limits[2] is None and limits[3] is None
    fig = original([[{"step": 1, "lambda_max": 2.0}]] * 2, labels=["a", "b"],
                   matrices=["GGN", "GGN"])
    assert fig.axes[0].get_ylabel().startswith("top GGN eigenvalue")
    fig = original([[{"step": 1, "lambda_max": 2.0}]] * 2, labels=["a", "b"],
                   matrices=["GGN", "Hessian"])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == [r"a: $\lambda_{max}$ (GGN)", r"b: $\lambda_{max}$ (Hessian)"]


def _history(folder, curvature):
    """A run folder as `landscape train --track-eigenvalues 1 [--track-curvature C]` writes
    it (SGD, lr 0.1, momentum 0.9: threshold 38)."""
    folder.mkdir()
    epochs = [{"epoch": k, "step": 10 * k, "lr": 0.1, "train_loss": 1 / k, "test_loss": 1 / k,
               "train_acc": 0.5, "test_acc": 0.4, "lambda_max": 5.0 + k} for k in (1, 2, 3)]
    record = {"status": {"complete": True}, "epochs": epochs}
    if curvature:
        record["tracked"] = {"curvature": curvature}
    (folder / "history.json").write_text(json.dumps(record))
    (folder / "config.json").write_text(json.dumps({"optimizer": "sgd", "lr": 0.1,
                                                    "momentum": 0.9, "nesterov": False}))
    return folder / "history.json"
