"""``landscape barriers`` through click's test runner."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from landscape_cli.main import cli
from landscape.barriers import barrier_matrix
from landscape.checkpoint import load_checkpoint, save_checkpoint
from landscape.data import load_dataset
from landscape.models import build_model
from landscape.surface import SurfaceOptions

from cli_helpers import one_line_error

DATA = ("--train-subset", "128", "--test-subset", "64")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist1d_small):
    """Three `landscape train`-style run folders (untrained MLPs of three seeds)."""
    root = tmp_path_factory.mktemp("runs")
    for seed in range(3):
        model = build_model("mlp", mnist1d_small, seed=seed, width=8, depth=1)
        save_checkpoint(root / f"seed{seed}" / "model.pt", model)
    return root


def test_barriers_writes_the_library_matrix_and_figure(runs, tmp_path):
    out, fig = tmp_path / "b.json", tmp_path / "b.png"
    seeds = [runs / f"seed{k}" for k in range(3)]
    result = run("barriers", *seeds, "--out", out, "--figure", fig, "--points", 5, *DATA,
                 "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    bar = record["barriers"]
    assert bar["labels"] == ["seed0", "seed1", "seed2"] and record["points"] == 5
    assert len(record["checkpoint_sha256"]) == 3 and fig.stat().st_size > 0
    bundle = load_dataset("mnist1d", train_subset=128, test_subset=64)
    models = [load_checkpoint(s / "model.pt")[0] for s in seeds]
    again = barrier_matrix(models, bundle, labels=bar["labels"], points=5,
                           options=SurfaceOptions(progress=False, device="cpu"))
    np.testing.assert_array_equal(np.array(bar["train_barrier"], dtype=float),
                                  again.train_barrier)
    np.testing.assert_array_equal(np.array(bar["test_error_barrier"], dtype=float),
                                  again.test_error_barrier)
    assert bar["groups"] == again.to_dict()["groups"]
    assert "training-loss barrier on the straight line" in result.stdout
    assert f"{bar['n_basins']} basin" in result.stdout
    # an absolute threshold above every barrier joins all three
    result = run("barriers", *seeds, "--out", out, "--points", 5, *DATA, "--device", "cpu",
                 "--quiet", "--threshold", 100, "--force", "--labels", "a,b,c")
    assert result.exit_code == 0, result.output
    bar = json.loads(out.read_text())["barriers"]
    assert bar["groups"] == [{"members": ["a", "b", "c"], "direct": True}]


def test_barriers_with_curves(runs, tmp_path):
    out = tmp_path / "b.json"
    result = run("barriers", runs / "seed0", runs / "seed1", "--out", out, "--points", 3,
                 "--curve-epochs", 1, *DATA, "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    bar = json.loads(out.read_text())["barriers"]
    curve = np.array(bar["curve_train_barrier"], dtype=float)
    assert curve.shape == (2, 2) and curve[0, 1] == curve[1, 0] >= 0 and curve[0, 0] == 0
    assert "trained curve" in result.stdout


def test_barriers_bad_input(runs, tmp_path):
    out = tmp_path / "b.json"
    cases = [
        (("barriers", runs / "seed0", "--out", out), "at least two"),
        (("barriers", runs / "seed0", tmp_path / "nope.pt", "--out", out), "nope"),
        (("barriers", runs / "seed0", runs / "seed1", "--out", out, "--figure", out),
         "different files"),
        (("barriers", runs / "seed0", runs / "seed1", "--out", out, "--figure",
          tmp_path / "b.bmp"), "bmp"),
        (("barriers", runs / "seed0", runs / "seed1", "--out", out, "--labels", "x"),
         "labels"),
    ]
    for args, words in cases:
        result = run(*args, *DATA, "--quiet")
        assert result.exit_code in (1, 2), result.output
        assert words in one_line_error(result, code=result.exit_code)
        assert not out.exists() and not (tmp_path / "b.bmp").exists()
    out.write_text("{}")
    line = one_line_error(run("barriers", runs / "seed0", runs / "seed1", "--out", out,
                              *DATA, "--quiet"))
    assert "already exists" in line and out.read_text() == "{}"
