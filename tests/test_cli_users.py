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
