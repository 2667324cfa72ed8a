"""Faults injected into the newest commands, with real processes and real files: damaged
checkpoints and resume states, two writers of one `connect` or `compare` output, labels whose
file names collide, damaged step outputs, unbounded counts, ranges beyond float32, SIGTERM in
the middle of long work, labels that are HTML."""
from __future__ import annotations

import json
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
from landscape.compare import CompareConfig, compare
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


# ------------------------------------------------------------------ compare: one file per output

TINY = CompareConfig(line_points=5, plane_points=5, interp_points=5, eigen_points=5, top_k=2,
                     trace_products=6, density_probes=1, density_steps=8, eps=(1e-3,),
                     sharpness_samples=2, curve_epochs=0, render_3d=False)
QUICK = ["--quick", "--quiet", "--no-3d", "--curve-epochs", "0", "--plane-points", "5",
         "--top-k", "2", *DATA]


def numbers(entry: dict) -> dict:
    """A model's measurements in a summary, without its label and checkpoint path."""
    return {k: v for k, v in entry.items() if k not in ("label", "checkpoint")}


@pytest.fixture(scope="module")
def prefixed(tmp_path_factory, small):
    """Two run folders whose names once made one file name: ``sb``'s eigenvector slice was
    ``surfaces/sb_eigen_1d.h5``, the 1-D surface of ``sb_eigen``."""
    root = tmp_path_factory.mktemp("prefixed")
    for name, seed in (("sb", 0), ("sb_eigen", 1)):
        save_checkpoint(root / name / "model.pt",
                        build_model("mlp", small, seed=seed, width=8, depth=1))
    return root / "sb", root / "sb_eigen"


@pytest.fixture(scope="module")
def alone(tmp_path_factory, prefixed, small):
    """Each model measured under labels that share nothing (``a``, ``b``)."""
    out = tmp_path_factory.mktemp("alone")
    result = compare(prefixed, out, config=TINY, labels=["a", "b"], data=small, progress=False,
                     log=None)
    return out, {"sb": result.summary["models"]["a"], "sb_eigen": result.summary["models"]["b"]}


def test_labels_that_prefix_each_other_never_share_a_file(tmp_path, prefixed, alone, small):
    from landscape.store import load_surface

    reference, expected = alone
    out = tmp_path / "cmp"
    for _ in range(2):  # the first run, then a rerun that reads every step back
        result = compare(prefixed, out, config=TINY, data=small, progress=False, log=None)
        for name in ("sb", "sb_eigen"):
            assert numbers(result.summary["models"][name]) == numbers(expected[name]), name
    assert {"surfaces_sb_eigen", "eigen_sb", "curvature_sb_eigen"} <= set(result.reused)
    for name, ref in (("sb", "a"), ("sb_eigen", "b")):
        for stem in ("surface_1d", "eigen_1d"):
            mine = load_surface(out / "models" / name / f"{stem}.h5")
            theirs = load_surface(reference / "models" / ref / f"{stem}.h5")
            assert mine.metrics["train_loss"].tolist() == theirs.metrics["train_loss"].tolist()
    own = sorted(p.name for p in (out / "models" / "sb").iterdir())
    assert own == sorted(p.name for p in (out / "models" / "sb_eigen").iterdir())


def test_labels_equal_ignoring_case_are_refused_in_one_line(tmp_path, prefixed):
    line = one_line_error(invoke("compare", *prefixed, "--labels", "SB,sb", "--out",
                                 tmp_path / "c", *QUICK))
    assert "labels must differ" in line and "ignoring case" in line
    assert not (tmp_path / "c").exists()


def test_step_records_are_merged_never_overwritten_by_a_stale_copy(tmp_path):
    from landscape.workflows import Steps

    files = {}
    for name in ("a", "b"):
        files[name] = tmp_path / f"{name}.txt"
        files[name].write_text(name)
    first, second = Steps(tmp_path, False), Steps(tmp_path, False)  # both read the record
    first.mark("a", "k1", [files["a"]])
    second.mark("b", "k2", [files["b"]])
    again = Steps(tmp_path, False)
    assert again.current("a", "k1", [files["a"]]) and again.current("b", "k2", [files["b"]])
    # a file another step rewrote is not this step's output any more
    warned = []
    files["a"].write_text("b")
    assert not Steps(tmp_path, False, warned.append).current("a", "k1", [files["a"]])
    assert len(warned) == 1 and "a.txt" in warned[0] and "changed" in warned[0]


# ------------------------------------------------------------------ compare: one writer

def test_two_compares_into_one_out_the_second_refused(tmp_path, pair):
    out = tmp_path / "cmp"
    first = landscape("compare", *pair, "--out", out, "--quick", "--quiet", "--no-3d",
                      "--curve-epochs", "100000", *DATA)
    try:
        wait_for(out / ".landscape.lock.owner", first)
        for extra in ([], ["--force"]):
            line = one_line_error(invoke("compare", *pair, "--out", out, *QUICK, *extra))
            assert f"pid {first.pid}" in line and "being written by another process" in line
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 143 and "interrupted" in err and "Traceback" not in err, err
    assert locks(out) == []
    state = out / "study_state.json"
    assert not state.exists() or isinstance(json.loads(state.read_text()), dict)


# ------------------------------------------------------------------ compare: damaged outputs

def test_a_damaged_step_output_is_computed_again_with_one_warning(tmp_path, prefixed):
    out = tmp_path / "cmp"
    args = ["compare", *prefixed, "--out", out, *QUICK]
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    before = json.loads((out / "summary.json").read_text())
    damaged = [out / "models" / "sb_eigen" / "surface_2d.h5",  # in the order of the steps
               out / "models" / "sb" / "curvature.json"]
    for path in damaged:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    res = invoke(*args)
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning")]
    assert len(warnings) == 2, res.stderr
    for path, line in zip(damaged, warnings):
        assert path.relative_to(out).as_posix() in line and "computing it again" in line
    after = json.loads((out / "summary.json").read_text())
    for name in ("sb", "sb_eigen"):
        assert numbers(after["models"][name]) == numbers(before["models"][name])
    reused = set(after["reused_steps"])
    assert {"interpolation", "surfaces_sb", "curvature_sb_eigen", "eigen_sb"} <= reused
    assert not reused & {"curvature_sb", "surfaces_sb_eigen"}
    res = invoke(*args)  # whole again: everything reused, nothing to warn about
    assert res.exit_code == 0 and "warning" not in res.stderr, res.output


# ------------------------------------------------------------------ reports: labels as text

def test_labels_that_are_html_or_span_lines_stay_text_in_both_reports(tmp_path, pair, small):
    labels = ["<script>x</script>", "a|b\nnext line"]
    result = compare(pair, tmp_path / "cmp", config=TINY, labels=labels, data=small,
                     progress=False, log=None)
    md = result.files["report_md"].read_text()
    page = result.files["report_html"].read_text()
    for text in (md, page):
        assert "<script>" not in text and "&lt;script&gt;x&lt;/script&gt;" in text
    assert "a\\|b next line" in md and "a|b\nnext" not in md
    header = next(line for line in md.splitlines() if line.startswith("| quantity"))
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    cells = len(header.replace("\\|", "").split("|"))
    assert cells == 6  # quantity, two models, their ratio: | a | b | c | d |
    assert all(len(row.replace("\\|", "").split("|")) == cells for row in rows
               if row.count("|") - row.count("\\|") == cells - 1)


# ------------------------------------------------------------------ web pages

def test_a_web_page_over_its_size_is_refused_naming_the_option_that_shrinks_it(tmp_path):
    import numpy as np

    from landscape.figures import WEB_PAGE_MB, export_html, web_page_bytes
    from landscape.store import save_surface
    from landscape.surface import Surface

    x = np.linspace(-1, 1, 1601)
    loss = (x[:, None] ** 2 + x[None, :] ** 2).astype(np.float32)
    big = Surface(x=x, y=x.copy(), metrics={"train_loss": loss},
                  done=np.ones(loss.shape, dtype=bool))
    assert web_page_bytes(big) > WEB_PAGE_MB * 1e6 > web_page_bytes(big, every=2)
    path = tmp_path / "big.h5"
    save_surface(path, big)
    page = tmp_path / "big.html"
    line = one_line_error(invoke("render", path, "--html", page, "--out", tmp_path / "b.png"))
    assert "--html-every 2" in line and "MB" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.h5"]  # nothing half-written
    with pytest.raises(LandscapeError, match="every=2"):
        export_html(big, page)
    assert not page.exists()


def test_a_web_page_with_backslashes_in_its_title_and_labels(tmp_path, plane):
    page = tmp_path / "scene.html"
    res = invoke("render", plane, plane, "--html", page, "--title", "C:\\runs\\sb \\n x",
                 "--labels", "a\\b,c\\\\d", "--html-every", "2")
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    text = page.read_text()
    assert "C:\\runs\\sb \\n x" in text and "a\\b" in text
