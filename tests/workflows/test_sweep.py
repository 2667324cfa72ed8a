"""A small sweep end to end: rows, observations, figures, report, reuse."""
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from landscape_cli.main import cli
from landscape.sweep import SweepConfig, observations, run_sweep


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    config = SweepConfig(train_subset=256, test_subset=128, model="mlp",
                         batch_sizes=(4, 64, "full"), target_steps=200, min_epochs=2,
                         max_epochs=40, target_loss=1.5, optimizer_batch=32,
                         optimizer_epochs=4)
    return run_sweep(config, out, progress=False, log=None), out, config


def test_rows_cover_every_run(small_sweep):
    result, out, config = small_sweep
    labels = [r["label"] for r in result["rows"]]
    assert labels == ["batch_4", "batch_64", "batch_full", "rprop_full", "rprop_32",
                      "rmsprop_32"]
    by = {r["label"]: r for r in result["rows"]}
    assert by["batch_4"]["smaller_than_classes"] and not by["batch_64"]["smaller_than_classes"]
    assert by["batch_full"]["batch_size"] == 256 and by["batch_full"]["full_batch"]
    # the lr policy: linear scaling capped at max_lr
    assert by["batch_4"]["lr"] == pytest.approx(0.01 * 4 / 32)
    assert by["batch_full"]["lr"] == pytest.approx(0.08)
    for r in result["rows"]:
        if not r["diverged"]:
            assert r["top_eigenvalue"] is not None and r["sharpness"] is not None
            assert r["samples_per_s"] > 0
        if r["converged"]:
            assert r["train_loss_curve"][r["curve_epochs"].index(r["epochs_to_target"])] <= 1.5


def test_outputs_written_and_reused(small_sweep):
    result, out, config = small_sweep
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["rows"] == result["rows"]
    expected = ["accuracy", "sharpness", "throughput", "optimizers", "sweep_report_html",
                "sweep_report_md"]
    if any(r["converged"] for r in result["rows"] if r["group"] == "batch"):
        expected.append("convergence")
    else:
        assert "convergence" not in result["files"]
    for name in expected:
        assert Path(result["files"][name]).exists(), name
    again = run_sweep(config, out, progress=False, log=None)
    assert set(again["reused_steps"]) == {r["label"] for r in result["rows"]}
    assert again["rows"] == result["rows"]


def test_observations_say_when_a_claim_fails():
    rows = [dict(label=f"b{b}", group="batch", diverged=False, batch_size=b,
                 test_accuracy=acc, top_eigenvalue=eig, converged=True, seconds_to_target=1.0,
                 epochs_to_target=3, smaller_than_classes=False, train_loss=0.01)
            for b, acc, eig in ((8, 0.9, 20.0), (64, 0.91, 10.0), (512, 0.92, 5.0))]
    text = " ".join(observations(rows, 10, 0.05))
    assert "shrinks" in text and "departs from the usual claim" in text


def test_sweep_cli_bad_sizes(tmp_path):
    res = CliRunner().invoke(cli, ["sweep", "--batch-sizes", "8,zero", "--out",
                                   str(tmp_path / "s")])
    assert res.exit_code != 0 and "--batch-sizes" in res.output and "Traceback" not in res.output


def test_dry_run_counts_the_steps_each_run_takes(small_sweep):
    """The dry run's optimizer steps per run are the steps the real runs took (their
    history's last step), and each run gets a positive time and a memory estimate."""
    from landscape.data import load_dataset
    from landscape.models import build_model
    from landscape.workflows.cost import sweep_dry_run

    result, out, config = small_sweep
    data = load_dataset("mnist1d", train_subset=256, test_subset=128)
    costs = sweep_dry_run(build_model("mlp", data, seed=0), data, config)
    assert [c.label for c in costs] == [r["label"] for r in result["rows"]]
    for cost in costs:
        history = json.loads((out / "runs" / cost.label / "history.json").read_text())
        assert cost.steps == history["epochs"][-1]["step"], cost.label
        assert cost.seconds > 0 and cost.memory.total_added > 0
    by = {c.label: c for c in costs}
    assert by["batch_4"].steps > by["batch_64"].steps > by["batch_full"].steps
