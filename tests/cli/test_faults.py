"""Faults injected into the newest commands, with real processes and real files: damaged
checkpoints and resume states, two writers of one `connect` output, unbounded counts, ranges
beyond float32, SIGTERM in the middle of long work."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cli_helpers import one_line_error
from landscape import build_model, save_checkpoint
from landscape.checkpoint import read_checkpoint, read_torch
from landscape.data import load_dataset
from landscape.errors import CheckpointError, LandscapeError
from landscape.grid import check_axis
from landscape_cli import common
from landscape_cli.main import cli

DATA = ["--train-subset", "64", "--test-subset", "32"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def landscape(*args, **kwargs) -> subprocess.Popen:
    """``landscape ARGS`` in its own process."""
    return subprocess.Popen([sys.executable, "-m", "landscape", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ), **kwargs)


def wait_for(path: Path, proc: subprocess.Popen, seconds: float = 120) -> None:
    """Until ``path`` exists (while ``proc`` runs)."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def flip(path: Path, start: int, stop: int) -> None:
    """Invert the bytes ``start:stop`` of ``path`` in place (as a failing disk would)."""
    data = bytearray(path.read_bytes())
    for i in range(start, min(stop, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def locks(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.lock*"))


@pytest.fixture(scope="module")
def small():
    return load_dataset("mnist1d", train_subset=64, test_subset=32)


@pytest.fixture(scope="module")
def pair(tmp_path_factory, small):
    """Two run folders (untrained MLPs of two seeds)."""
    root = tmp_path_factory.mktemp("pair")
    for seed in (0, 1):
        save_checkpoint(root / f"seed{seed}" / "model.pt",
                        build_model("mlp", small, seed=seed, width=8, depth=1))
    return root / "seed0", root / "seed1"


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    """A small complete 2-D surface file."""
    import numpy as np

    from landscape.store import save_surface
    from landscape.surface import Surface

    x = np.linspace(-1, 1, 5)
    loss = x[:, None] ** 2 + x[None, :] ** 2
    path = tmp_path_factory.mktemp("plane") / "plane.h5"
    save_surface(path, Surface(x=x, y=x.copy(), metrics={"train_loss": loss},
                               done=np.ones(loss.shape, dtype=bool)))
    return path


# ------------------------------------------------------------------ damaged checkpoints

def test_a_bit_flipped_checkpoint_is_refused_in_one_line(tmp_path, small):
    path = tmp_path / "model.pt"
    save_checkpoint(path, build_model("cnn1d", small, seed=0))
    assert read_checkpoint(path)["format"] == "landscape-checkpoint"
    flip(path, 20000, 20100)
    torch.load(path, weights_only=True)  # torch itself takes it as it is
    with pytest.raises(CheckpointError, match="is damaged .* fails its CRC check"):
        read_checkpoint(path)
    out = tmp_path / "s.h5"
    line = one_line_error(invoke("surface", path, "--x", "-1:1:3", "--quiet", "--out", out))
    assert f"checkpoint {str(path)!r} is damaged" in line
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_a_cut_short_archive_is_damaged_and_garbage_unreadable(tmp_path, small):
    path = tmp_path / "model.pt"
    save_checkpoint(path, build_model("mlp", small, seed=0, width=8, depth=1))
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(CheckpointError, match="is damaged"):
        read_checkpoint(path)
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable curve state .*: start over"):
        read_torch(path, "curve state", "start over with --force")


def test_sigterm_stops_train_and_a_bit_flipped_resume_state_is_refused(tmp_path):
    run = tmp_path / "run"
    args = ["train", "--model", "mlp", "--width", "8", "--depth", "1", *DATA,
            "--checkpoint-every", "1", "--quiet", "--out", run]
    proc = landscape(*args, "--epochs", "100000")
    wait_for(run / "resume.pt", proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "interrupted: checkpoints so far kept" in err and "Traceback" not in err
    assert locks(run) == []
    resume = run / "resume.pt"
    flip(resume, resume.stat().st_size // 2, resume.stat().st_size // 2 + 40)
    before = (run / "model.pt").read_bytes()
    line = one_line_error(invoke("train", "--resume", run))
    assert f"{str(resume)!r} is damaged" in line
    assert (run / "model.pt").read_bytes() == before


# ------------------------------------------------------------------ connect: one writer

def test_two_connects_into_one_out_the_second_refused(tmp_path, pair):
    out = tmp_path / "curve.h5"
    first = landscape("connect", *pair, "--out", out, "--epochs", "100000", "--points", "3",
                      "--quiet", "--checkpoint-seconds", "0", *DATA)
    try:
        wait_for(tmp_path / "curve.state.pt", first)
        for extra in ([], ["--force"], ["--resume"]):
            line = one_line_error(invoke("connect", *pair, "--out", out, "--epochs", "1",
                                         "--points", "3", "--quiet", *DATA, *extra))
            assert f"pid {first.pid}" in line and "being written by another process" in line
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    assert first.returncode == 143 and "interrupted" in err, err
    assert not out.exists() and locks(tmp_path) == []
    state = read_torch(tmp_path / "curve.state.pt", "curve state")  # whole, to continue
    assert state["format"] == "landscape-connect-state" and state["epoch"] >= 1


# ------------------------------------------------------------------ bounds

@pytest.mark.parametrize("args, option", [
    (["connect", "{a}", "{b}", "--out", "{tmp}/c.h5", "--points", "100000000"], "--points"),
    (["connect", "{a}", "{b}", "--out", "{tmp}/c.h5", "--epochs", "100000000"], "--epochs"),
    (["train", "--out", "{tmp}/run", "--epochs", "100000000"], "--epochs"),
    (["surface", "{a}/model.pt", "--out", "{tmp}/g.h5", "--x=-1e39:1e39:5"], "--x"),
    (["surface", "{a}/model.pt", "--out", "{tmp}/g.h5", "--x=-1:1:3", "--y=0:4e38:3"],
     "--y"),
    (["render", "{plane}", "--gif", "{tmp}/o.gif", "--frames", "100000000"], "--frames"),
    (["render", "{plane}", "--gif", "{tmp}/o.gif", "--frames", "3000", "--size", "1000x1000"],
     "--frames"),
    (["compare", "{a}", "{b}", "--out", "{tmp}/d", "--plane-points", "100000"],
     "--plane-points"),
    (["hessian", "{a}/model.pt", "--out", "{tmp}/h.json", "--trace-products", "10000000"],
     "--trace-products"),
])
def test_every_count_and_range_is_bounded_in_one_line(tmp_path, pair, plane, args, option):
    args = [a.format(a=pair[0], b=pair[1], tmp=tmp_path, plane=plane) for a in args]
    line = one_line_error(invoke(*args), code=2)
    assert option in line, line
    assert list(tmp_path.iterdir()) == []


def test_the_library_refuses_coordinates_beyond_float32():
    assert check_axis([-3e38, 3e38], "x").tolist() == [-3e38, 3e38]
    with pytest.raises(LandscapeError, match="beyond float32"):
        check_axis([-1e39, 0.0, 1e39], "x")


def test_the_command_line_bound_is_the_library_one():
    from landscape.grid import MAX_POINTS

    assert common.MAX_POINTS == MAX_POINTS
    assert common.MAX_PLANE_SIDE ** 2 <= MAX_POINTS < (common.MAX_PLANE_SIDE + 1) ** 2


# ------------------------------------------------------------------ SIGTERM

def test_sigterm_stops_a_surface_like_ctrl_c_and_it_resumes(tmp_path, pair):
    out = tmp_path / "s.h5"
    args = ["surface", pair[0] / "model.pt", "--x", "-1:1:300", "--y", "-1:1:300",
            "--checkpoint-seconds", "0.2", "--batch-points", "1", "--quiet", *DATA,
            "--out", out]
    proc = landscape(*args)
    wait_for(out, proc)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    assert locks(tmp_path) == []
    from landscape.store import load_surface

    partial = load_surface(out)
    assert 0 < partial.done.sum() < partial.done.size
