"""Surface files: round trip, damaged files, crash safety (SIGKILL), resume, identity checks."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from landscape import build_model
from landscape.data import DataBundle
from landscape.directions import random_directions, save_directions
from landscape.errors import StoreError
from landscape.evaluate import Evaluator
from landscape.store import load_surface, save_surface
from landscape.surface import Surface, SurfaceOptions, compute_surface

X = np.linspace(-1.0, 1.0, 8)
Y = np.linspace(-0.5, 1.0, 6)


def problem(seed: int = 0):
    """A small deterministic model, data set and pair of directions (also used by the
    killed subprocess, which loads this file)."""
    g = torch.Generator().manual_seed(0)

    def make(n):
        return torch.randn(n, 12, generator=g), torch.randint(0, 3, (n,), generator=g)

    bundle = DataBundle(train=make(64), test=make(32), num_classes=3, name="synthetic")
    model = build_model("mlp", input_shape=(12,), num_classes=3, width=8, depth=1).eval()
    return model, bundle, random_directions(model, count=2, seed=seed)


def _single_thread(fn):
    """Run ``fn`` with one torch thread, like the subprocess, so that sums agree bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(threads)


def test_round_trip_keeps_everything(tmp_path):
    model, bundle, dirs = problem()
    out = tmp_path / "s.h5"
    trajectory = {"coords": np.arange(6.0).reshape(3, 2), "explained_variance_ratio":
                  np.array([0.7, 0.2]), "labels": ["a.pt", "b.pt", "c.pt"],
                  "epochs": np.array([0, 1, 2])}
    anchors = {"coords": np.array([[0.0, 0.0]]), "labels": ["a.pt"]}
    dpath = tmp_path / "d.h5"
    save_directions(dpath, dirs)
    made = compute_surface(model, bundle, dpath, X, Y,
                           options=SurfaceOptions(metrics=("train_loss", "test_acc"),
                                                  progress=False),
                           out=out, provenance={"norm": "filter", "seed": 0},
                           trajectory=trajectory, anchors=anchors)
    got = load_surface(out)
    assert got.path == str(out) and got.shape == (8, 6) and got.complete
    assert np.array_equal(got.x, X) and np.array_equal(got.y, Y)
    assert list(got.metrics) == ["train_loss", "test_acc"]
    for m in made.metrics:
        assert np.array_equal(got.metrics[m], made.metrics[m])
    assert got.provenance["identity"] == made.provenance["identity"]
    assert got.provenance["directions"]["path"] == str(dpath)
    assert got.trajectory["labels"].tolist() == ["a.pt", "b.pt", "c.pt"]
    np.testing.assert_array_equal(got.trajectory["coords"], trajectory["coords"])
    assert got.anchors["labels"].tolist() == ["a.pt"]
    with h5py.File(out, "r") as fh:
        assert fh.attrs["format"] == "landscape-surface" and fh.attrs["grid"] == "8x6"
        assert fh.attrs["norm"] == "filter" and fh["directions"].attrs["path"] == str(dpath)
        assert fh.attrs["directions_sha256"] == made.provenance["identity"]["directions_sha256"]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # permissions of any new file


def test_a_partial_surface_keeps_nan_for_missing_points(tmp_path):
    surface = Surface(x=X, y=None, metrics={"train_loss": np.full(8, np.nan)},
                      done=np.zeros(8, dtype=bool))
    surface.metrics["train_loss"][2] = np.nan  # a computed NaN: done says which is which
    surface.done[2] = True
    save_surface(tmp_path / "p.h5", surface)
    got = load_surface(tmp_path / "p.h5")
    assert got.ndim == 1 and got.y is None and got.done.tolist() == [False] * 2 + [True] + \
        [False] * 5 and got.nonfinite == 1


def test_damaged_or_foreign_files_give_one_line_errors(tmp_path):
    model, bundle, dirs = problem()
    good = tmp_path / "good.h5"
    compute_surface(model, bundle, dirs, X, Y, options=SurfaceOptions(progress=False), out=good)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"\x89HDF\r\n but not really" * 10)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as fh:
        fh["data"] = np.arange(3)
    gutted = tmp_path / "gutted.h5"
    gutted.write_bytes(good.read_bytes())
    with h5py.File(gutted, "r+") as fh:
        del fh["done"]
    cases = {truncated: "not a readable HDF5", garbage: "not a readable HDF5",
             foreign: "not a landscape surface", gutted: "damaged",
             tmp_path / "missing.h5": "does not exist", tmp_path: "not a file"}
    for path, message in cases.items():
        with pytest.raises(StoreError, match=message) as info:
            load_surface(path)
        assert "\n" not in str(info.value)


def test_existing_output_is_refused_without_resume_or_force(tmp_path):
    model, bundle, dirs = problem()
    out = tmp_path / "s.h5"
    compute_surface(model, bundle, dirs, X, Y, options=SurfaceOptions(progress=False), out=out)
    with pytest.raises(StoreError, match="already exists"):
        compute_surface(model, bundle, dirs, X, Y, options=SurfaceOptions(progress=False), out=out)
    other = compute_surface(model, bundle, dirs, X[:3], None,
                            options=SurfaceOptions(progress=False), out=out, force=True)
    assert load_surface(out).shape == (3,) and other.shape == (3,)


def test_resume_after_an_interruption_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    model, bundle, dirs = problem()
    reference = compute_surface(model, bundle, dirs, X, Y, options=SurfaceOptions(progress=False))
    out = tmp_path / "s.h5"
    calls = {"n": 0}
    original = Evaluator.evaluate

    def interrupted(self, coords, precision=None):
        calls["n"] += 1
        if calls["n"] > 17:
            raise KeyboardInterrupt
        return original(self, coords, precision)

    monkeypatch.setattr(Evaluator, "evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        compute_surface(model, bundle, dirs, X, Y,
                        options=SurfaceOptions(progress=False, checkpoint_seconds=1e9), out=out)
    monkeypatch.setattr(Evaluator, "evaluate", original)
    partial = load_surface(out)  # saved on the way out, although no checkpoint was due
    assert partial.done.sum() == 17
    for p, value in zip(model.parameters(), problem()[0].parameters()):
        assert torch.equal(p, value)  # weights restored even after the interruption
    seen = []
    monkeypatch.setattr(Evaluator, "evaluate",
                        lambda self, c, precision=None: seen.append(c) or original(self, c))
    resumed = compute_surface(model, bundle, dirs, X, Y, options=SurfaceOptions(progress=False),
                              out=out, resume=True)
    assert len(seen) == X.size * Y.size - 17  # only the missing points
    final = load_surface(out)
    assert final.complete and final.provenance["runs"] == 2
    for m in reference.metrics:
        assert np.array_equal(final.metrics[m], reference.metrics[m])
        assert np.array_equal(resumed.metrics[m], reference.metrics[m])


def test_checkpoints_are_bounded_in_time(tmp_path, monkeypatch):
    import landscape.surface as surface_module

    model, bundle, dirs = problem()
    saves = []
    real = surface_module.save_surface
    monkeypatch.setattr(surface_module, "save_surface",
                        lambda path, s: saves.append(int(s.done.sum())) or real(path, s))
    compute_surface(model, bundle, dirs, X, Y,
                    options=SurfaceOptions(progress=False, checkpoint_seconds=1e9),
                    out=tmp_path / "a.h5")
    assert saves == [0, 48]  # at the start and at the end only
    saves.clear()
    compute_surface(model, bundle, dirs, X, Y,
                    options=SurfaceOptions(progress=False, checkpoint_seconds=0.0),
                    out=tmp_path / "b.h5")
    assert saves == [0] + list(range(1, 49)) + [48]  # every point when the bound is zero


def test_resume_refuses_other_inputs_and_names_the_differences(tmp_path):
    model, bundle, dirs = problem()
    out = tmp_path / "s.h5"
    compute_surface(model, bundle, dirs, X, Y, options=SurfaceOptions(progress=False), out=out,
                    points=range(5))
    before = out.read_bytes()
    other_model = build_model("mlp", input_shape=(12,), num_classes=3, width=8, depth=1,
                              seed=1).eval()
    other_data = DataBundle(train=(bundle.train[0] + 1, bundle.train[1]), test=bundle.test,
                            num_classes=3, name="synthetic")
    cases = [
        (dict(directions=problem(seed=1)[2]), ["directions"]),
        (dict(model=other_model, directions=random_directions(other_model, seed=0)),
         ["model weights", "directions"]),
        (dict(y=np.linspace(-0.5, 1.0, 7)), ["grid y (-0.5:1:6 in the file, -0.5:1:7 now)"]),
        (dict(x=X + 0.5), ["grid x"]),
        (dict(metrics=("train_loss",)), ["metrics"]),
        (dict(data=other_data), ["data"]),
        (dict(bn_recalibrate=True), ["BatchNorm recalibration"]),
    ]
    for change, names in cases:
        args = dict(model=model, data=bundle, directions=dirs, x=X, y=Y,
                    metrics=("train_loss", "train_acc"), bn_recalibrate=False)
        args.update(change)
        options = SurfaceOptions(metrics=args.pop("metrics"), progress=False,
                                 bn_recalibrate=args.pop("bn_recalibrate"))
        with pytest.raises(StoreError) as info:
            compute_surface(args.pop("model"), args.pop("data"), args.pop("directions"),
                            options=options, out=out, resume=True, **args)
        message = str(info.value)
        assert message.startswith(f"cannot resume '{out}'")
        for name in names:
            assert name in message, (name, message)
        assert out.read_bytes() == before  # never touched


def test_stale_temporary_files_are_cleaned_up(tmp_path):
    model, bundle, dirs = problem()
    stale = tmp_path / ".s.h5.abc123.tmp"
    stale.write_bytes(b"left by a killed run")
    compute_surface(model, bundle, dirs, X, Y, options=SurfaceOptions(progress=False),
                    out=tmp_path / "s.h5")
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]


_CHILD = textwrap.dedent("""
    import importlib.util, sys, time
    import torch
    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location("store_tests", sys.argv[1])
    tests = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tests)
    from landscape.surface import SurfaceOptions, compute_surface
    model, bundle, dirs = tests.problem()
    model.register_forward_pre_hook(lambda module, args: time.sleep(0.05))  # slow points
    compute_surface(model, bundle, dirs, tests.X, tests.Y, out=sys.argv[2],
                    options=SurfaceOptions(checkpoint_seconds=0.0, progress=False))
""")


def test_sigkill_mid_run_never_corrupts_and_resume_completes(tmp_path):
    out = tmp_path / "killed.h5"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    child = subprocess.Popen([sys.executable, "-c", _CHILD, __file__, str(out)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    done = 0
    try:
        while done < 10:
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the child made no progress"
            if out.exists():
                done = int(load_surface(out).done.sum())  # every snapshot is readable
            time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    partial = load_surface(out)
    assert 10 <= partial.done.sum() < X.size * Y.size
    model, bundle, dirs = problem()
    resumed = _single_thread(lambda: compute_surface(model, bundle, dirs, X, Y,
                                                     options=SurfaceOptions(progress=False),
                                                     out=out, resume=True))
    reference = _single_thread(lambda: compute_surface(model, bundle, dirs, X, Y,
                                                       options=SurfaceOptions(progress=False)))
    final = load_surface(out)
    assert final.complete and resumed.complete
    for m in reference.metrics:
        assert np.array_equal(final.metrics[m], reference.metrics[m])
    assert [p.name for p in Path(tmp_path).iterdir()] == ["killed.h5"]
