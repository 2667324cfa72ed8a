"""Nothing lost, nothing run that was not asked for: full disks (a real file-size limit in a
subprocess), concurrent writers (real processes), checkpoints that name code, non-finite
weights and losses, byte-identical checkpoints, long names."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli_helpers import one_line_error
from landscape import TrainConfig, build_model, load_checkpoint, save_checkpoint, train
from landscape._util import output_lock, write_json
from landscape.data import load_dataset
from landscape.errors import CheckpointError, LandscapeError, WriteError
from landscape.store import load_surface, save_surface
from landscape.surface import Surface
from landscape_cli.main import cli

DATA = ["--train-subset", "64", "--test-subset", "32"]


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def temps(folder: Path) -> list[str]:
    """Temporary and set-aside files the project makes, anywhere below ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.endswith(".tmp") or ".tmp." in p.name or p.name == ".replaced")


def limited(args, limit: int) -> subprocess.CompletedProcess:
    """Run ``landscape ARGS`` in a subprocess whose files may not grow beyond ``limit``
    bytes (RLIMIT_FSIZE: writes past it fail with EFBIG, as on a full disk)."""
    code = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
        from landscape_cli.main import cli
        cli({[str(a) for a in args]!r}, prog_name="landscape")
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ), timeout=120)


def assert_one_line(proc: subprocess.CompletedProcess, *words: str) -> str:
    assert proc.returncode not in (0, -11, 139), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, proc.stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def small():
    return load_dataset("mnist1d", train_subset=64, test_subset=32)


@pytest.fixture
def checkpoint(tmp_path, small):
    path = tmp_path / "model.pt"
    save_checkpoint(path, build_model("mlp", small, seed=0, width=8, depth=1))
    return path


# ----------------------------------------------------------------------------- full disk

@pytest.mark.slow
def test_full_disk_during_a_surface_a_resume_and_a_complete_resume(tmp_path, checkpoint):
    out = tmp_path / "s.h5"
    surface = ["surface", checkpoint, "--x", "-1:1:5", "--quiet", "--out", out]
    # a new surface: not even its directions file fits
    proc = limited(surface, 2_000)
    assert_one_line(proc, "cannot write", str(tmp_path))
    assert ".tmp" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]

    result = invoke(*surface)
    assert result.exit_code == 0, result.output
    complete = sha(out)
    # debris of killed writers of the surface and of its directions file
    for name in (".s.h5.k1ll3d.tmp", ".s.directions.h5.k1ll3d.tmp"):
        (tmp_path / name).write_bytes(b"left by a killed run")
    # a complete file resumed on a full disk is left alone: nothing to compute, nothing written
    proc = limited(surface + ["--resume"], 2_000)
    assert proc.returncode == 0, proc.stderr
    assert "already complete" in proc.stdout
    assert sha(out) == complete
    assert temps(tmp_path) == []

    # a partial file resumed on a full disk: one line, the partial file bit-identical
    partial = load_surface(out)
    partial.done[2:] = False
    for values in partial.metrics.values():
        values[2:] = np.nan
    save_surface(out, partial)
    before = sha(out)
    proc = limited(surface + ["--resume"], 2_000)
    assert_one_line(proc, "cannot write", f"'{out}'", "no space left")
    assert sha(out) == before
    assert temps(tmp_path) == []
    assert load_surface(out).done.sum() == 2


@pytest.mark.slow
def test_full_disk_during_train_force_keeps_the_old_run(tmp_path):
    run = tmp_path / "run"
    args = ["train", "--model", "mlp", "--width", "8", "--depth", "1", *DATA,
            "--epochs", "2", "--quiet", "--out", run]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    before = {p.relative_to(run): sha(p) for p in run.rglob("*") if p.is_file()}
    proc = limited(args + ["--force", "--seed", "1"], 3_000)
    assert_one_line(proc, "cannot write", str(run))
    after = {p.relative_to(run): sha(p) for p in run.rglob("*") if p.is_file()}
    assert after == before  # the old run, every file bit-identical; nothing else
    assert temps(run) == []


def test_write_errors_name_the_users_file_and_leave_no_temporary(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(WriteError, match=r"cannot write '.*file/out.json'"):
        write_json(blocker / "out.json", {"a": 1})  # its folder is a file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# ----------------------------------------------------------------------- concurrent writers

HOLD = """
import sys, time
from landscape._util import output_lock
with output_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_force_against_a_live_writer_is_refused(tmp_path, checkpoint):
    out = tmp_path / "s.h5"
    surface = ["surface", checkpoint, "--x", "-1:1:3", "--quiet", "--out", out]
    assert invoke(*surface).exit_code == 0
    before = sha(out)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        line = one_line_error(invoke(*surface, "--force"))
        assert f"pid {holder.pid}" in line and "being written by another process" in line
        line = one_line_error(invoke(*surface, "--resume"))
        assert f"pid {holder.pid}" in line
        assert sha(out) == before
    finally:
        holder.kill()
        holder.wait()
    # the holder is dead: its lock is taken over
    assert invoke(*surface, "--force").exit_code == 0


def test_two_trains_into_one_folder_the_second_refused_and_a_killed_run_keeps_history(
        tmp_path):
    run = tmp_path / "run"
    args = ["train", "--model", "mlp", "--width", "8", "--depth", "1", *DATA, "--quiet",
            "--checkpoint-every", "0"]
    first = subprocess.Popen([sys.executable, "-m", "landscape", *args, "--epochs", "100000",
                              "--out", str(run)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not (run / "history.json").exists():  # written every 2 s while training
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        for extra in ([], ["--force"]):
            line = one_line_error(invoke(*args, "--epochs", "1", "--seed", "1", "--out", run,
                                         *extra))
            assert f"pid {first.pid}" in line, line
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    history = json.loads((run / "history.json").read_text())
    assert history["status"]["complete"] is False and len(history["epochs"]) >= 1
    assert history["epochs"][-1]["epoch"] == len(history["epochs"])
    # the killed process's lock is taken over
    result = invoke(*args, "--epochs", "1", "--out", run, "--force")
    assert result.exit_code == 0, result.output
    assert json.loads((run / "history.json").read_text())["status"]["complete"] is True


def test_output_lock_is_reentrant_in_one_process(tmp_path):
    target = tmp_path / "x.json"
    with output_lock(target):
        with output_lock(target):
            write_json(target, {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


# --------------------------------------------------------------------- code in checkpoints

USER_MODEL = """
from pathlib import Path
from torch import nn
Path(__file__).with_name("imported").write_text("ran")

def build(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[-1], num_classes))
"""


def test_a_checkpoint_naming_a_file_is_refused_without_trust(tmp_path, small):
    code = tmp_path / "mine.py"
    code.write_text(USER_MODEL)
    model = build_model(f"{code}:build", small, seed=0)
    path = tmp_path / "user.pt"
    save_checkpoint(path, model)
    (tmp_path / "imported").unlink()
    with pytest.raises(CheckpointError, match=r"names code .*mine\.py:build.*--trust-code"):
        load_checkpoint(path)
    line = one_line_error(invoke("hessian", path, "--top-k", "1", "--quiet"))
    assert f"{code}:build" in line and "--trust-code" in line
    assert not (tmp_path / "imported").exists()  # the code never ran

    ok = invoke("hessian", path, "--top-k", "1", "--quiet", "--trust-code")
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "imported").exists()
    # moved elsewhere: --model names the code, from any folder
    other = tmp_path / "elsewhere"
    other.mkdir()
    moved = other / "copy.py"
    moved.write_text(USER_MODEL)
    code.unlink()
    cwd = os.getcwd()
    try:
        os.chdir(other)
        ok = invoke("hessian", path, "--top-k", "1", "--quiet", "--model", "copy.py:build")
    finally:
        os.chdir(cwd)
    assert ok.exit_code == 0, ok.output
    assert (other / "imported").exists()
    # built-in models load as before; a dataset naming code is refused like a model
    mlp = build_model("mlp", small, width=4, depth=1)
    save_checkpoint(tmp_path / "mlp.pt", mlp)
    load_checkpoint(tmp_path / "mlp.pt")
    mlp.landscape_spec["dataset"] = {"name": f"{moved}:data"}
    save_checkpoint(tmp_path / "data.pt", mlp)
    line = one_line_error(invoke("hessian", tmp_path / "data.pt", "--top-k", "1"))
    assert f"names code for its dataset ('{moved}:data')" in line


# ------------------------------------------------------------------- non-finite numbers

def test_nan_weights_through_hessian_are_one_line_and_write_nothing(tmp_path, small):
    model = build_model("mlp", small, seed=0, width=8, depth=1)
    with torch.no_grad():
        next(model.parameters())[0, 0] = float("nan")
    path = tmp_path / "nan.pt"
    save_checkpoint(path, model)
    for args in (["--top-k", "2"], ["--top-k", "0", "--trace", "--out", tmp_path / "t.json"]):
        line = one_line_error(invoke("hessian", path, "--quiet", *args))
        assert "non-finite weights" in line and "1 of" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.pt"]
    # the library, told to accept them, stops at the first non-finite product
    from landscape.hessian import HessianOptions, hessian_eigenvalues, hessian_trace
    loaded, _ = load_checkpoint(path, allow_nonfinite=True)
    unchecked = HessianOptions(check=False)
    for run in (lambda: hessian_eigenvalues(loaded, small, k=2, options=unchecked),
                lambda: hessian_trace(loaded, small, n_products=6, options=unchecked)):
        with pytest.raises(LandscapeError, match="Hessian-vector product is not finite"):
            run()


def _surface(values: np.ndarray) -> Surface:
    x = np.linspace(-1, 1, values.shape[0])
    y = np.linspace(-1, 1, values.shape[1])
    return Surface(x=x, y=y, metrics={"train_loss": values},
                   done=np.ones(values.shape, dtype=bool), provenance={})


def test_shape_warns_about_nan_points_and_refuses_a_mostly_nan_surface(tmp_path):
    x, y = np.meshgrid(np.linspace(-1, 1, 9), np.linspace(-1, 1, 9), indexing="ij")
    bowl = x ** 2 + y ** 2
    some = bowl.copy()
    some[0, 0] = np.nan
    save_surface(tmp_path / "some.h5", _surface(some))
    result = invoke("shape", tmp_path / "some.h5", "--json", tmp_path / "some.json")
    assert result.exit_code == 0, result.output
    assert "warning: 1 of 81 points of train_loss are NaN or infinite" in result.stderr
    text = (tmp_path / "some.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))[
        "nonfinite_points"] == 1

    mostly = np.full((5, 5), np.nan)
    mostly[2, 2] = 0.0
    save_surface(tmp_path / "nan.h5", _surface(mostly))
    line = one_line_error(invoke("shape", tmp_path / "nan.h5", "--json", tmp_path / "n.json"))
    assert "24 of 25 points" in line and "basin shape" in line
    assert not (tmp_path / "n.json").exists()


def test_json_is_strict_nan_becomes_null_and_is_flagged(tmp_path):
    path = tmp_path / "r.json"
    write_json(path, {"trace": {"estimate": float("nan"), "n": 3},
                      "values": np.array([1.0, np.inf]), "t": torch.tensor(2.0)})
    data = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert data == {"trace": {"estimate": None, "n": 3}, "values": [1.0, None], "t": 2.0,
                    "nonfinite_fields": ["trace.estimate", "values[1]"]}


# ------------------------------------------------------------------ reproducible files

def test_identical_trainings_write_identical_checkpoints(tmp_path, small):
    config = TrainConfig(epochs=2, batch_size=16, seed=3, progress=False, checkpoint_every=1)
    digests = []
    for name in ("a", "b"):
        model = build_model("mlp", small, seed=3, width=8, depth=1)
        result = train(model, small, config, out_dir=tmp_path / name)
        files = [tmp_path / name / "model.pt", *result.checkpoints]
        digests.append([sha(p) for p in files])
    assert digests[0] == digests[1] and len(digests[0]) == 4


def test_names_near_the_255_byte_limit(tmp_path, small):
    long = "n" * 250 + ".h5"
    save_surface(tmp_path / long, _surface(np.zeros((3, 3))))
    assert load_surface(tmp_path / long).shape == (3, 3)
    with output_lock(tmp_path / long):
        save_checkpoint(tmp_path / ("m" * 252 + ".pt"), build_model("mlp", small, width=4))
    assert sorted(len(p.name) for p in tmp_path.iterdir()) == [253, 255]
