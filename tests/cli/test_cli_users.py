"""One consistent command line: run folders wherever a checkpoint goes, outputs whose suffix
matches what is written, refused unknown metrics, quiet pipes and progress, honest headers."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from PIL import Image

from landscape_cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _history_run(folder, optimizer="sgd", lr=0.01, momentum=0.9, pre=False):
    """A run folder with a tracked history (as `landscape train --track-eigenvalues` writes)."""
    folder.mkdir()
    epochs = []
    for k in range(1, 6):
        entry = {"epoch": k, "step": 10 * k, "lr": lr, "train_loss": 1 / k, "test_loss": 1.2 / k,
                 "train_acc": 0.5, "test_acc": 0.4, "lambda_max": 5.0 + k}
        if pre:
            entry.update(lambda_max_preconditioned=100.0 * k,
                         preconditioned_threshold=2 / lr)
        epochs.append(entry)
    (folder / "history.json").write_text(json.dumps({"status": {"complete": True},
                                                     "epochs": epochs}))
    (folder / "config.json").write_text(json.dumps({"optimizer": optimizer, "lr": lr,
                                                    "momentum": momentum, "nesterov": False}))
    return folder / "history.json"


def test_plot_sharpness_draws_lambda_max_histories(tmp_path):
    sgd = _history_run(tmp_path / "sgd")
    rms = _history_run(tmp_path / "rms", "rmsprop", 0.001, 0.0, pre=True)
    res = run("plot", sgd, rms, "--kind", "sharpness", "--out", tmp_path / "s.png")
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "s.png").size[0] > 100
    # --metric lambda_max on a history is the sharpness figure, not silently the loss curves
    res = run("plot", sgd, "--metric", "lambda_max", "--out", tmp_path / "m.png")
    assert res.exit_code == 0 and (tmp_path / "m.png").is_file()
    res = run("plot", rms, "--kind", "sharpness", "--metric", "lambda_max_preconditioned",
              "--out", tmp_path / "p.png")
    assert res.exit_code == 0, res.output
    res = run("plot", sgd, "--kind", "sharpness", "--metric", "lambda_max_preconditioned",
              "--out", tmp_path / "q.png")
    assert res.exit_code == 1 and "no lambda_max_preconditioned" in res.output
    assert not (tmp_path / "q.png").exists()


def test_plot_threshold_of_the_run(tmp_path):
    from landscape.train import run_threshold

    entry = {"lr": 0.01, "preconditioned_threshold": 3800.0}
    assert run_threshold({"optimizer": "sgd", "momentum": 0.9}, entry) == \
        pytest.approx((2 * 1.9 / 0.01, "2(1+β)/lr"))
    assert run_threshold({"optimizer": "adam"}, entry)[0] is None
    assert run_threshold({"optimizer": "adam"}, entry, "lambda_max_preconditioned") == \
        (3800.0, "38/lr")


@pytest.mark.parametrize("args,hint", [
    (("--kind", "history", "--metric", "lambda_maximum"), "does not draw 'lambda_maximum'"),
    (("--metric", "train_los"), "does not draw 'train_los'"),
    (("--kind", "sharpness", "--metric", "loss"), "does not draw 'loss'"),
])
def test_plot_refuses_unknown_metrics(tmp_path, args, hint):
    sgd = _history_run(tmp_path / "sgd")
    res = run("plot", sgd, *args, "--out", tmp_path / "x.png")
    assert res.exit_code == 2 and hint in res.output
    assert not (tmp_path / "x.png").exists()


def test_plot_history_metric_selects_panels(tmp_path):
    sgd = _history_run(tmp_path / "sgd")
    res = run("plot", sgd, "--metric", "loss", "--out", tmp_path / "h.png")
    assert res.exit_code == 0, res.output


def test_progress_off_a_terminal_writes_a_line_per_tenth(capsys):
    import io

    from landscape.util import progress as make_progress
    from landscape.util.progress import LineProgress

    bar = make_progress(40, "surface", True, unit="pt")  # pytest's stderr is no terminal
    assert isinstance(bar, LineProgress)
    for _ in range(40):
        bar.update(1)
    bar.set_postfix(loss="0.1")
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 11 and lines[0] == "surface: 0% (0/40 pt)"
    assert lines[1].startswith("surface: 10% (4/40 pt")
    assert "\r" not in "".join(lines) and lines[-1].startswith("surface: 100% (40/40")
    silent = LineProgress(None, "Hv", "Hv", io.StringIO())
    silent.update(5)
    assert silent.stream.getvalue() == ""
    assert make_progress(10, "x", False).disable  # disabled: tqdm's silent bar


def test_progress_off_a_terminal_works_as_a_context_manager(capsys):
    """Library code uses its bars in ``with`` blocks (sharpness does); off a terminal that
    must work as it does with tqdm (the demo run from a log crashed without it)."""
    from landscape.util import progress as make_progress

    with make_progress(2, "sharpness", True, unit="measure") as bar:
        bar.update(2)
    assert capsys.readouterr().err.splitlines()[-1].startswith("sharpness: 100% (2/2")


def test_sharpness_with_progress_off_a_terminal(mnist1d_small):
    """``measure_sharpness`` with progress on, its stderr a pipe: finishes and reports."""
    from landscape.models import build_model
    from landscape.sharpness import SharpnessSummary, measure_sharpness

    model = build_model("mlp", mnist1d_small, seed=0, width=8)
    out = measure_sharpness(model, mnist1d_small, progress=True, samples=2, maxiter=2, steps=2)
    assert isinstance(out, SharpnessSummary)


def test_progress_on_a_terminal_stays_tqdm(monkeypatch):
    import sys

    from landscape.util import progress as make_progress
    from landscape.util.progress import LineProgress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    bar = make_progress(10, "x", True)
    assert not isinstance(bar, LineProgress)
    bar.close()


def test_closed_pipe_ends_quietly():
    """`landscape ... | head`: the reader goes away; no traceback, no message, status 141."""
    import os
    import subprocess
    import sys

    code = ("import click\nfrom landscape_cli.main import cli\n"
            "@cli.command()\ndef flood():\n"
            "    for i in range(200000):\n        click.echo('x' * 60)\n"
            "cli(['flood'], prog_name='landscape')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    assert proc.stdout.readline().strip() == b"x" * 60
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait() == 141 and err == b""


def test_commands_take_run_folders_and_check_out_suffixes(tmp_path):
    from landscape.checkpoint import save_checkpoint
    from landscape.data import load_dataset
    from landscape.models import build_model

    bundle = load_dataset("mnist1d", train_subset=64, test_subset=32)
    runs = []
    for seed in range(3):
        folder = tmp_path / f"run{seed}"
        folder.mkdir()
        save_checkpoint(folder / "model.pt", build_model("mlp", bundle, seed=seed, width=4,
                                                         depth=1))
        runs.append(folder)
    res = run("interpolate", runs[0], runs[1], "--alpha", "0:1:3", "--out", tmp_path / "i.h5",
              "--quiet")
    assert res.exit_code == 0, res.output
    res = run("plane", *runs, "--x", "-0.5:1.5:3", "--y", "-0.5:1.5:3", "--out",
              tmp_path / "p.h5", "--quiet")
    assert res.exit_code == 0, res.output
    res = run("hessian", runs[0], "--top-k", "1", "--out", tmp_path / "h.png")
    assert res.exit_code == 2 and "name it .json" in res.output
    assert not (tmp_path / "h.png").exists()
    res = run("sharpness", runs[0], "--out", tmp_path / "s.png")
    assert res.exit_code == 2 and "name it .json" in res.output
    res = run("hessian", runs[0], "--top-k", "1", "--out", tmp_path / "h.json", "--quiet")
    assert res.exit_code == 0 and json.loads((tmp_path / "h.json").read_text())
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run("hessian", empty, "--top-k", "1")
    assert res.exit_code == 1 and "without model.pt" in res.output


def test_a_failing_user_model_leaves_no_interrupted_run(tmp_path):
    (tmp_path / "bad.py").write_text(
        "import torch\n"
        "class Bad(torch.nn.Module):\n"
        "    def __init__(self, n):\n"
        "        super().__init__()\n        self.lin = torch.nn.Linear(n, 10)\n"
        "    def forward(self, x):\n        raise ValueError('shapes do not fit')\n"
        "def net(input_shape, num_classes):\n    return Bad(input_shape[0])\n"
        "def broken(input_shape, num_classes):\n    raise RuntimeError('no such layer')\n")
    out = tmp_path / "run"
    res = run("train", "--model", f"{tmp_path / 'bad.py'}:net", "--train-subset", "64",
              "--test-subset", "32", "--epochs", "1", "--out", out, "--quiet")
    assert res.exit_code == 1 and "shapes do not fit" in res.output
    assert "Traceback" not in res.output
    assert not (out / "resume.pt").exists() and not list(out.rglob("*.pt"))
    assert not (out / "config.json").exists()
    res = run("train", "--model", f"{tmp_path / 'bad.py'}:broken", "--train-subset", "64",
              "--test-subset", "32", "--out", tmp_path / "r2", "--quiet")
    assert res.exit_code == 1 and "raised RuntimeError: no such layer" in res.output
    assert not (tmp_path / "r2").exists()


def test_train_header_prints_rmsprop_momentum(tmp_path):
    res = run("train", "--optimizer", "rmsprop", "--lr", "0.001", "--train-subset", "64",
              "--test-subset", "32", "--epochs", "1", "--out", tmp_path / "r", "--quiet")
    assert res.exit_code == 0, res.output
    assert "rmsprop lr 0.001, momentum 0 ->" in res.output
    assert json.loads((tmp_path / "r" / "config.json").read_text())["momentum"] == 0.0
