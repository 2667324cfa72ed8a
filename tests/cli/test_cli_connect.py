"""``landscape connect`` through click's test runner."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from landscape_cli.main import cli
from landscape.checkpoint import save_checkpoint
from landscape.models import build_model
from landscape.store import load_surface

from cli_helpers import one_line_error


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist1d_small):
    """Three `landscape train`-style run folders (untrained MLPs of three seeds)."""
    root = tmp_path_factory.mktemp("runs")
    for seed, name in ((0, "seed0"), (1, "seed1"), (2, "seed2")):
        model = build_model("mlp", mnist1d_small, seed=seed, width=8, depth=1)
        save_checkpoint(root / name / "model.pt", model)
    return root


FAST = ("--epochs", "1", "--points", "3", "--batch-size", "64", "--quiet")


def test_connect_writes_curve_line_state_and_figure(runs, tmp_path):
    out, fig = tmp_path / "curve.h5", tmp_path / "curve.png"
    result = run("connect", runs / "seed0", runs / "seed1" / "model.pt", "--out", out,
                 "--figure", fig, *FAST)
    assert result.exit_code == 0, result.output
    assert "bezier curve   train loss: ends" in result.stdout
    assert "straight line  train loss: ends" in result.stdout
    curve, line = load_surface(out), load_surface(tmp_path / "curve_line.h5")
    assert curve.complete and line.complete and list(curve.x) == [0.0, 0.5, 1.0]
    assert curve.provenance["curve"] == "bezier" and line.provenance["curve"] == "line"
    # Endpoints are named by their run folders, not "model" twice.
    assert list(curve.anchors["labels"]) == ["seed0", "seed1"]
    np.testing.assert_array_equal(curve.metrics["train_loss"][[0, -1]],
                                  line.metrics["train_loss"][[0, -1]])
    assert (tmp_path / "curve.state.pt").is_file() and fig.stat().st_size > 1000
    # A second run without --force or --resume refuses, naming the file; --resume reuses the
    # finished state (nothing left to train) and gives the same curve.
    again = run("connect", runs / "seed0", runs / "seed1", "--out", out, *FAST)
    assert "already exists" in one_line_error(again)
    resumed = run("connect", runs / "seed0", runs / "seed1", "--out", out, "--resume", *FAST)
    assert resumed.exit_code == 0, resumed.output
    assert "resumed after epoch 1" in resumed.stderr
    np.testing.assert_array_equal(load_surface(out).metrics["train_loss"],
                                  curve.metrics["train_loss"])


def test_connect_polychain_labels_and_no_line(runs, tmp_path):
    out = tmp_path / "chain.h5"
    result = run("connect", runs / "seed0", runs / "seed1", "--out", out, "--curve",
                 "polychain", "--labels", "first,second", "--no-line", *FAST)
    assert result.exit_code == 0, result.output
    curve = load_surface(out)
    assert curve.provenance["curve"] == "polychain"
    assert list(curve.anchors["labels"]) == ["first", "second"]
    assert not (tmp_path / "chain_line.h5").exists()


@pytest.mark.parametrize("args, message, code", [
    (("missing", "seed1"), "does not exist", 1),
    (("seed0", "seed0"), "identical", 1),
    (("seed0", "seed1", "--labels", "one"), "two names", 2),
    (("seed0", "seed1", "--points", "2"), "--points", 2),
    (("seed0", "seed1", "--figure", "{tmp}/x.gif"), "unknown figure format", 1),
    (("seed0", "seed1", "--resume", "--force"), "exclude each other", 2),
    (("seed0", "seed1", "--lr", "0"), "--lr", 2),
])
def test_bad_input_is_one_line_and_writes_nothing(runs, tmp_path, args, message, code):
    out = tmp_path / "curve.h5"
    args = [str(runs / a) if a.startswith("seed") or a == "missing" else
            a.replace("{tmp}", str(tmp_path)) for a in args]
    result = run("connect", *args[:2], "--out", out, *FAST, *args[2:])
    assert message in one_line_error(result, code=code)
    assert list(tmp_path.iterdir()) == []


def test_leftover_state_needs_resume_or_force(runs, tmp_path):
    out = tmp_path / "curve.h5"
    (tmp_path / "curve.state.pt").write_bytes(b"old")
    result = run("connect", runs / "seed0", runs / "seed1", "--out", out, *FAST)
    assert "--resume" in one_line_error(result)
    broken = run("connect", runs / "seed0", runs / "seed1", "--out", out, "--resume", *FAST)
    assert "not a readable curve state" in one_line_error(broken)
    assert not out.exists()
    forced = run("connect", runs / "seed0", runs / "seed1", "--out", out, "--force", *FAST)
    assert forced.exit_code == 0, forced.output
    assert out.is_file()


def test_connect_help():
    result = run("connect", "--help")
    assert result.exit_code == 0
    for option in ("--curve", "--epochs", "--resume", "--force", "--figure", "--labels"):
        assert option in result.output


def test_plane_and_line_name_their_minima(runs, tmp_path):
    from landscape.plot2d import anchors_of, plot_contours

    models = [runs / f"seed{k}" / "model.pt" for k in range(3)]
    out = tmp_path / "plane.h5"
    result = run("plane", *models, "--x", "0:1:3", "--y", "0:1:3", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    plane = load_surface(out)
    assert list(anchors_of(plane)[1]) == ["seed0", "seed1", "seed2"]  # run folder names
    fig = plot_contours(plane)
    drawn = [t.get_text() for t in fig.axes[0].texts]
    assert {"seed0", "seed1", "seed2"} <= set(drawn) and "model" not in drawn
    named = run("plane", *models, "--x", "0:1:3", "--y", "0:1:3", "--out", tmp_path / "n.h5",
                "--labels", "a,b,c", "--quiet")
    assert named.exit_code == 0, named.output
    assert list(anchors_of(load_surface(tmp_path / "n.h5"))[1]) == ["a", "b", "c"]
    bad = run("interpolate", *models[:2], "--alpha", "0:1:3", "--out", tmp_path / "l.h5",
              "--labels", "a,b,c", "--quiet")
    assert "give 2 names" in one_line_error(bad, code=2)
    assert not (tmp_path / "l.h5").exists()


def test_plane_default_grid_passes_through_the_three_models(runs, tmp_path):
    models = [runs / f"seed{k}" / "model.pt" for k in range(3)]
    out = tmp_path / "plane.h5"
    result = run("plane", *models, "--orthogonal", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    plane = load_surface(out)
    coords = plane.anchors["coords"]
    assert coords[2, 0] not in (0.0, 1.0)  # the third model off the plain grid's lines
    assert np.isin(coords[:, 0], plane.x).all() and np.isin(coords[:, 1], plane.y).all()
