"""``landscape surface | interpolate | plane | trajectory`` through click's CliRunner."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from landscape_cli.main import cli
from landscape import TrainConfig, build_model, load_checkpoint, load_dataset, save_checkpoint
from landscape import train as train_model
from landscape._util import sha256_file
from landscape.directions import load_directions
from landscape.store import load_surface
from landscape.train import evaluate_split, loss_function

from cli_helpers import one_line_error as _one_line_error

QUIET = ["--quiet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny finished training run (MLP with BatchNorm, 3 epochs, a checkpoint per epoch)."""
    bundle = load_dataset("mnist1d", train_subset=128, test_subset=64)
    model = build_model("mlp", bundle, width=8, depth=1, batchnorm=True)
    out = tmp_path_factory.mktemp("run") / "run"
    train_model(model, bundle, TrainConfig(epochs=3, batch_size=32, checkpoint_every=1,
                                           progress=False), out_dir=out)
    return out


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_surface_2d_writes_surface_and_directions(run_dir, tmp_path):
    ckpt = run_dir / "model.pt"
    out = tmp_path / "s.h5"
    result = invoke("surface", ckpt, "--x=-1:1:4", "--y=0.5:1:3", "--metrics",
                    "train_loss,test_acc", "--out", out, *QUIET)
    assert result.exit_code == 0, result.output
    line = result.stdout.strip()
    assert line.count("\n") == 0 and "12/12 points" in line and "0 NaN/inf" in line
    assert "min train_loss" in line and "cosine between the directions" in result.stderr
    surface = load_surface(out)
    assert surface.shape == (4, 3) and surface.complete
    np.testing.assert_array_equal(surface.y, np.linspace(0.5, 1.0, 3))
    dirs, info = load_directions(tmp_path / "s.directions.h5")
    assert info["sha256"] == surface.provenance["identity"]["directions_sha256"]
    assert info["provenance"]["norm"] == "filter" and info["provenance"]["seed"] == 0
    prov = surface.provenance
    assert prov["checkpoint_sha256"] == sha256_file(ckpt)
    assert prov["dataset"]["train_subset"] == 128  # the checkpoint's own data by default
    # the value at x[1], y[2] is the checkpoint's model moved there, evaluated plainly
    model, _ = load_checkpoint(ckpt)
    state = model.state_dict()
    for n in dirs[0]:
        state[n] = state[n] + float(surface.x[1]) * dirs[0][n] + float(surface.y[2]) * dirs[1][n]
    model.load_state_dict(state)
    bundle = load_dataset("mnist1d", train_subset=128, test_subset=64)
    loss, _ = evaluate_split(model, *bundle.train, loss_function("cross_entropy", 10))
    assert surface.metrics["train_loss"][1, 2] == pytest.approx(loss, rel=1e-5)


def test_existing_output_resume_and_force(run_dir, tmp_path):
    ckpt, out = run_dir / "model.pt", tmp_path / "s.h5"
    args = ["surface", ckpt, "--x=-1:1:3", "--out", out, *QUIET]
    assert invoke(*args).exit_code == 0
    first = load_surface(out).metrics["train_loss"].copy()
    error = _one_line_error(invoke(*args))
    assert "already exists" in error and "--resume" in error and "--force" in error
    resumed = invoke(*args, "--resume")
    assert resumed.exit_code == 0 and "3/3 points" in resumed.stdout
    assert np.array_equal(load_surface(out).metrics["train_loss"], first)
    assert invoke(*args, "--force").exit_code == 0
    assert _files(tmp_path) == ["s.directions.h5", "s.h5"]


def test_resume_with_other_settings_is_refused_and_names_them(run_dir, tmp_path):
    ckpt, out = run_dir / "model.pt", tmp_path / "s.h5"
    base = ["surface", ckpt, "--x=-1:1:3", "--y=-1:1:3", "--out", out, *QUIET]
    assert invoke(*base).exit_code == 0
    before = {p: (tmp_path / p).read_bytes() for p in _files(tmp_path)}
    error = _one_line_error(invoke(*base, "--seed", "1", "--resume"))
    assert "other directions" in error
    error = _one_line_error(invoke("surface", ckpt, "--x=-1:1:3", "--y=-1:1:4", "--out", out,
                                   "--resume", *QUIET))
    assert "grid y (-1:1:3 in the file, -1:1:4 now)" in error
    error = _one_line_error(invoke(*base, "--resume", "--metrics", "train_loss,test_loss"))
    assert "metrics" in error
    assert {p: (tmp_path / p).read_bytes() for p in _files(tmp_path)} == before


def test_surface_1d_and_options(run_dir, tmp_path):
    out = tmp_path / "line.h5"
    result = invoke("surface", run_dir / "model.pt", "--x=0.5:2:4", "--norm", "layer",
                    "--kind", "states", "--ignore", "none", "--bn-recalibrate", "--precision",
                    "bf16", "--out", out, *QUIET)
    assert result.exit_code == 0, result.output
    assert "bf16 error vs fp32" in result.stderr
    surface = load_surface(out)
    assert surface.ndim == 1 and surface.shape == (4,) and surface.complete
    assert set(surface.provenance["precision_error"]) == {"train_loss", "train_acc"}
    assert surface.provenance["identity"]["bn_recalibrate"] is True


def test_interpolate_reaches_both_checkpoints(run_dir, tmp_path):
    a, b = run_dir / "checkpoints" / "epoch_0000.pt", run_dir / "model.pt"
    out = tmp_path / "i.h5"
    result = invoke("interpolate", a, b, "--alpha=-0.5:1.5:5", "--out", out, *QUIET)
    assert result.exit_code == 0, result.output
    surface = load_surface(out)
    np.testing.assert_array_equal(surface.x, [-0.5, 0.0, 0.5, 1.0, 1.5])
    bundle = load_dataset("mnist1d", train_subset=128, test_subset=64)
    loss_fn = loss_function("cross_entropy", 10)
    loss_a = evaluate_split(load_checkpoint(a)[0], *bundle.train, loss_fn)[0]
    loss_b = evaluate_split(load_checkpoint(b)[0], *bundle.train, loss_fn)[0]
    # alpha = 0 is A itself (float32 loss summed in another order: agreement to ~1e-7)
    assert surface.metrics["train_loss"][1] == pytest.approx(loss_a, rel=1e-6)
    # alpha = 1 is A + (B - A) in float32: B up to rounding of the weights
    assert surface.metrics["train_loss"][3] == pytest.approx(loss_b, rel=1e-5)
    assert surface.anchors["labels"].tolist() == ["epoch_0000.pt", "run"]  # run folder name
    np.testing.assert_array_equal(surface.anchors["coords"], [[0.0], [1.0]])


def test_plane_through_three_checkpoints(run_dir, tmp_path):
    cks = [run_dir / "checkpoints" / f"epoch_000{k}.pt" for k in (0, 1, 3)]
    out = tmp_path / "p.h5"
    result = invoke("plane", *cks, "--x=-0.5:1.5:3", "--y=-0.5:1.5:5", "--out", out, *QUIET)
    assert result.exit_code == 0, result.output
    surface = load_surface(out)
    assert surface.shape == (3, 5)
    np.testing.assert_array_equal(surface.anchors["coords"], [[0, 0], [1, 0], [0, 1]])
    # the grid point (0.5, 0) is the midpoint of the first two checkpoints: check it
    bundle = load_dataset("mnist1d", train_subset=128, test_subset=64)
    m0, m1 = load_checkpoint(cks[0])[0], load_checkpoint(cks[1])[0]
    mid = {n: 0.5 * (t + m1.state_dict()[n]) if t.is_floating_point() else t
           for n, t in m0.state_dict().items()}
    m0.load_state_dict(mid)
    loss = evaluate_split(m0, *bundle.train, loss_function("cross_entropy", 10))[0]
    assert surface.metrics["train_loss"][1, 1] == pytest.approx(loss, rel=1e-5)
    auto = invoke("plane", *cks, "--orthogonal", "--out", tmp_path / "q.h5", *QUIET)
    assert auto.exit_code == 0, auto.output
    q = load_surface(tmp_path / "q.h5")
    coords = q.anchors["coords"]
    assert q.x.min() < coords[:, 0].min() and q.x.max() > coords[:, 0].max()
    assert q.y.min() < coords[:, 1].min() and q.y.max() > coords[:, 1].max()


def test_trajectory_stores_path_and_variance(run_dir, tmp_path):
    out = tmp_path / "t.h5"
    result = invoke("trajectory", run_dir, "--x=-2:2:3", "--y=-1:1:3", "--out", out, *QUIET)
    assert result.exit_code == 0, result.output
    assert "explained variance" in result.stderr
    surface = load_surface(out)
    traj = surface.trajectory
    names = sorted(p.name for p in (run_dir / "checkpoints").glob("*.pt"))
    assert traj["labels"].tolist() == names and traj["epochs"].tolist() == [0, 1, 2, 3]
    assert traj["coords"].shape == (4, 2)
    ratio = traj["explained_variance_ratio"]
    assert ratio.shape == (2,) and ratio[0] >= ratio[1] > 0 and ratio.sum() <= 1 + 1e-12
    np.testing.assert_allclose(traj["coords"][-1], [0.0, 0.0], atol=1e-6)  # the final model
    with h5py.File(out, "r") as fh:
        assert set(fh["trajectory"]) == {"coords", "explained_variance_ratio", "labels",
                                         "epochs"}


@pytest.mark.parametrize("bad", ["--x=1:-1:5", "--x=a:b:3", "--x=-1:1:1", "--y=-1:1"])
def test_malformed_ranges_fail_cleanly(run_dir, tmp_path, bad):
    out = tmp_path / "out"
    out.mkdir()
    result = invoke("surface", run_dir / "model.pt", bad, "--out", out / "s.h5", *QUIET)
    _one_line_error(result, code=2)
    assert _files(out) == []


def test_bad_inputs_fail_with_one_line_and_leave_no_files(run_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert "does not exist" in _one_line_error(
        invoke("surface", tmp_path / "missing.pt", "--out", out / "s.h5", *QUIET))
    assert "not a readable checkpoint" in _one_line_error(
        invoke("surface", junk, "--out", out / "s.h5", *QUIET))
    assert _files(out) == []
    corrupt = out / "c.h5"
    corrupt.write_bytes(b"garbage, not HDF5")
    assert "not a readable HDF5 file" in _one_line_error(
        invoke("surface", run_dir / "model.pt", "--x=-1:1:3", "--out", corrupt, "--resume",
               *QUIET))
    assert _files(out) == ["c.h5"] and corrupt.read_bytes() == b"garbage, not HDF5"
    assert "Invalid value for --metrics" in _one_line_error(
        invoke("surface", run_dir / "model.pt", "--metrics", "val_loss", "--out", out / "m.h5",
               *QUIET), code=2)
    assert "tf32 needs a CUDA GPU" in _one_line_error(
        invoke("surface", run_dir / "model.pt", "--x=-1:1:3", "--precision", "tf32",
               "--device", "cpu", "--out", out / "p.h5", *QUIET))
    assert "channels-last needs image inputs" in _one_line_error(
        invoke("surface", run_dir / "model.pt", "--x=-1:1:3", "--channels-last",
               "--out", out / "p.h5", *QUIET))
    assert _files(out) == ["c.h5"]
    empty = tmp_path / "empty_run"
    empty.mkdir()
    assert "no model.pt" in _one_line_error(
        invoke("trajectory", empty, "--out", out / "t.h5", *QUIET))
    assert _files(out) == ["c.h5"]


def test_interpolating_other_architectures_is_refused(run_dir, tmp_path):
    other = build_model("mlp", load_dataset("mnist1d", train_subset=128, test_subset=64),
                        width=5, depth=1, batchnorm=True)
    save_checkpoint(tmp_path / "other.pt", other)
    out = tmp_path / "out"
    out.mkdir()
    error = _one_line_error(invoke("interpolate", run_dir / "model.pt", tmp_path / "other.pt",
                                   "--out", out / "i.h5", *QUIET))
    assert "shape" in error
    assert _files(out) == []


def test_dist_timeout_option_on_every_surface_command(run_dir, tmp_path):
    for command in ("surface", "interpolate", "plane", "trajectory"):
        assert "--dist-timeout" in invoke(command, "--help").output
    error = _one_line_error(invoke("surface", run_dir / "model.pt", "--dist-timeout", "0",
                                   "--out", tmp_path / "s.h5", *QUIET), code=2)
    assert "--dist-timeout" in error
    assert _files(tmp_path) == []
    # without torchrun's environment the option changes nothing: one process, one file
    result = invoke("surface", run_dir / "model.pt", "--x=-1:1:3", "--dist-timeout", "5",
                    "--out", tmp_path / "s.h5", *QUIET)
    assert result.exit_code == 0 and "3/3 points" in result.stdout
    assert "distributed" not in load_surface(tmp_path / "s.h5").provenance


def test_a_failed_forced_rerun_keeps_the_old_directions(run_dir, tmp_path):
    ckpt, out = run_dir / "model.pt", tmp_path / "h.h5"
    assert invoke("surface", ckpt, "--x=-1:1:3", "--out", out, *QUIET).exit_code == 0
    before = {p: (tmp_path / p).read_bytes() for p in _files(tmp_path)}
    # other directions (seed 4), and an option that fails after they are made
    error = _one_line_error(invoke("surface", ckpt, "--x=-1:1:3", "--seed", "4",
                                   "--channels-last", "--force", "--out", out, *QUIET))
    assert "channels-last needs image inputs" in error
    assert {p: (tmp_path / p).read_bytes() for p in _files(tmp_path)} == before


def test_inputs_are_never_overwritten_and_bad_devices_fail_first(run_dir, tmp_path):
    copy = tmp_path / "copy.pt"
    copy.write_bytes((run_dir / "model.pt").read_bytes())
    original = copy.read_bytes()
    # a checkpoint is never a surface's name (.h5/.hdf5 only) ...
    error = _one_line_error(invoke("surface", copy, "--x=-1:1:3", "--out", copy, "--force",
                                   *QUIET), code=2)
    assert "name it .h5 or .hdf5" in error
    first = sorted((run_dir / "checkpoints").glob("*.pt"))[0]
    error = _one_line_error(invoke("trajectory", run_dir, "--out", first, "--force", *QUIET),
                            code=2)
    assert "name it .h5 or .hdf5" in error
    # ... and one that is named like one is still refused as an output
    named_h5 = tmp_path / "model.h5"
    named_h5.write_bytes(original)
    error = _one_line_error(invoke("surface", named_h5, "--x=-1:1:3", "--out", named_h5,
                                   "--force", *QUIET))
    assert "is an input of this command" in error
    assert named_h5.read_bytes() == original
    named_h5.unlink()
    error = _one_line_error(invoke("interpolate", copy, copy, "--out", tmp_path / "i.h5",
                                   *QUIET))
    assert "the two models are identical" in error
    error = _one_line_error(invoke("plane", copy, run_dir / "checkpoints" / "epoch_0001.pt",
                                   run_dir / "checkpoints" / "epoch_0001.pt", "--out",
                                   tmp_path / "p.h5", *QUIET))
    assert "lie on one line" in error
    error = _one_line_error(invoke("surface", copy, "--device", "foo", "--out",
                                   tmp_path / "d.h5", *QUIET))
    assert "unknown device 'foo'" in error
    error = _one_line_error(invoke("surface", copy, "--x=-1:1:5000", "--y=-1:1:5000", "--out",
                                   tmp_path / "g.h5", *QUIET))
    assert "25,000,000 points" in error
    assert copy.read_bytes() == original
    assert _files(tmp_path) == ["copy.pt"]


def test_resuming_a_finished_surface_says_so(run_dir, tmp_path):
    args = ["surface", run_dir / "model.pt", "--x=-1:1:3", "--out", tmp_path / "s.h5", *QUIET]
    assert invoke(*args).exit_code == 0
    result = invoke(*args, "--resume")
    assert result.exit_code == 0 and "already complete, nothing computed" in result.output


def test_resume_needs_only_the_output_and_equals_one_run(run_dir, tmp_path):
    """--resume reads the grid, the settings and the directions from the file: a partial run
    made with --seed 3, a 5 x 3 grid and two metrics finishes with nothing else given."""
    from landscape.surface import SurfaceOptions, compute_surface

    ckpt = run_dir / "model.pt"
    full = tmp_path / "full.h5"
    args = ["--x=-1:1:5", "--y=0:1:3", "--seed", "3", "--metrics", "train_loss,test_acc"]
    assert invoke("surface", ckpt, *args, "--out", full, *QUIET).exit_code == 0
    # the same surface, stopped after 4 points (as a kill would leave it)
    part = tmp_path / "part.h5"
    model, info = load_checkpoint(ckpt)
    reference = load_surface(full)
    compute_surface(model, load_dataset(**info["dataset"]), tmp_path / "full.directions.h5",
                    reference.x, reference.y, out=part, points=range(4),
                    options=SurfaceOptions(metrics=("train_loss", "test_acc"), progress=False),
                    directions_recipe={"type": "random", "seed": 3})
    assert int(load_surface(part).done.sum()) == 4
    result = invoke("surface", ckpt, "--out", part, "--resume", *QUIET)
    assert result.exit_code == 0, result.output
    assert "15/15 points" in result.stdout
    finished = load_surface(part)
    for name in ("train_loss", "test_acc"):
        assert np.array_equal(finished.metrics[name], reference.metrics[name])
    # an option given on the command line still counts: another grid is refused
    bad = invoke("surface", ckpt, "--out", part, "--resume", "--x=-1:1:7", *QUIET)
    assert bad.exit_code != 0 and "grid x" in bad.output


def test_dry_run_prints_the_cost_and_writes_nothing(run_dir, tmp_path):
    result = invoke("surface", run_dir / "model.pt", "--x=-1:1:101", "--y=-1:1:101",
                    "--out", tmp_path / "s.h5", "--dry-run", *QUIET)
    assert result.exit_code == 0, result.output
    assert "10,201 points, about" in result.stderr and "MiB" in result.stderr
    assert "nothing computed" in result.stderr
    assert _files(tmp_path) == []
