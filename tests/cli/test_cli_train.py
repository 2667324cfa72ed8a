import json
import os

import pytest
import torch
from click.testing import CliRunner

from landscape_cli.main import cli
from landscape import __version__, load_checkpoint

from cli_helpers import one_line_error as _one_line_error


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_version_and_info():
    res = run("--version")
    assert res.exit_code == 0 and __version__ in res.output
    res = run("info")
    assert res.exit_code == 0 and "torch" in res.output and "device" in res.output


def test_train_writes_a_run_folder(tmp_path):
    out = tmp_path / "run"
    res = run("train", "--model", "mlp", "--train-subset", "128", "--test-subset", "64",
              "--epochs", "2", "--batch-size", "full", "--lr", "0.1", "--out", str(out),
              "--quiet")
    assert res.exit_code == 0, res.output
    assert "test acc" in res.output
    model, info = load_checkpoint(out / "model.pt")
    assert info["dataset"]["train_subset"] == 128 and info["model"]["name"] == "mlp"
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["batch_size"] == "full" and cfg["resolved_batch"] == 128
    cmd = json.loads((out / "command.json").read_text())
    assert "train" in cmd["command"] and cmd["model_parameters"] == 2698


def test_train_bad_inputs_are_one_line(tmp_path):
    cases = [
        (["--batch-size", "zero"], "positive integer or 'full'"),
        (["--optimizer", "lbfgs"], "lbfgs"),
        (["--dataset", "cifar10"], "--data-root"),
        (["--model", "nope"], "unknown model"),
        (["--model", "resnet20"], "image inputs"),
        (["--train-subset", "99999"], "between 1 and 4000"),
        (["--compile", "--compile-backend", "nope"], "unknown torch.compile backend 'nope'"),
    ]
    for extra, message in cases:
        out = tmp_path / "bad"
        res = CliRunner().invoke(cli, ["train", "--epochs", "1", "--out", str(out), *extra])
        assert res.exit_code != 0, extra
        assert message in res.output, (extra, res.output)
        assert "Traceback" not in res.output
        assert not (out / "model.pt").exists()


def test_train_divergence_exits_nonzero(tmp_path):
    res = CliRunner().invoke(cli, ["train", "--model", "mlp", "--train-subset", "64",
                                   "--test-subset", "32", "--lr", "1e6", "--momentum", "0",
                                   "--epochs", "5", "--out", str(tmp_path), "--quiet"])
    assert res.exit_code == 3 and "diverged" in res.output


FAST = ("--model", "mlp", "--train-subset", "128", "--test-subset", "64", "--epochs", "1",
        "--quiet")


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _checkpoints(out):
    return sorted(p.name for p in (out / "checkpoints").glob("*.pt"))


def test_train_refuses_a_folder_holding_a_run_and_force_replaces_only_its_files(tmp_path):
    out = tmp_path / "run"
    res = _invoke("train", *FAST, "--epochs", "3", "--checkpoint-every", "1", "--out", out)
    assert res.exit_code == 0, res.output
    assert _checkpoints(out) == [f"epoch_{k:04d}.pt" for k in range(4)]
    (out / "notes.txt").write_text("mine")
    (out / "checkpoints" / "readme.txt").write_text("mine too")
    model_bytes = (out / "model.pt").read_bytes()

    error = _one_line_error(_invoke("train", *FAST, "--out", out))
    assert "already holds a training run" in error and "--force" in error
    assert (out / "model.pt").read_bytes() == model_bytes and len(_checkpoints(out)) == 4

    res = _invoke("train", *FAST, "--checkpoint-every", "1", "--out", out, "--force")
    assert res.exit_code == 0, res.output
    assert _checkpoints(out) == ["epoch_0000.pt", "epoch_0001.pt"]  # the old run's are gone
    history = json.loads((out / "history.json").read_text())["epochs"]
    assert [h["epoch"] for h in history] == [1]
    assert (out / "model.pt").read_bytes() != model_bytes
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "checkpoints" / "readme.txt").read_text() == "mine too"


def test_train_history_or_checkpoints_alone_count_as_a_run(tmp_path):
    for name in ("history.json", "checkpoints/epoch_0000.pt"):
        out = tmp_path / name.replace("/", "_")
        (out / name).parent.mkdir(parents=True)
        (out / name).write_text("{}")
        assert "already holds a training run" in _one_line_error(
            _invoke("train", *FAST, "--out", out))
    unrelated = tmp_path / "unrelated"  # a folder without a run is fine
    unrelated.mkdir()
    (unrelated / "notes.txt").write_text("mine")
    assert _invoke("train", *FAST, "--out", unrelated).exit_code == 0
    assert (unrelated / "model.pt").exists() and (unrelated / "notes.txt").exists()


@pytest.mark.skipif(not os.path.exists(os.devnull), reason="no null device")
def test_train_out_that_is_not_a_folder_is_one_line(tmp_path):
    assert "is not a folder" in _one_line_error(_invoke("train", *FAST, "--out", os.devnull))


@pytest.mark.parametrize("extra, message", [
    (("--device", "foo"), "foo"),
    (("--weight-decay", "-1"), "weight decay"),
    (("--weight-decay", "inf"), "weight decay"),
    (("--momentum", "-1"), "momentum"),
    (("--momentum", "1"), "momentum"),
    (("--optimizer", "rprop", "--weight-decay", "0.1"), "rprop takes no weight decay"),
])
def test_train_invalid_options_write_nothing(tmp_path, extra, message):
    out = tmp_path / "run"
    error = _one_line_error(_invoke("train", *FAST, *extra, "--out", out))
    assert message in error
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_train_cuda_without_cuda_writes_nothing(tmp_path):
    out = tmp_path / "run"
    assert "CUDA is not available" in _one_line_error(
        _invoke("train", *FAST, "--device", "cuda", "--out", out))
    assert not out.exists()


def test_batch_size_errors_name_the_option(tmp_path):
    res = _invoke("train", *FAST, "--batch-size", "0", "--out", tmp_path / "run")
    assert "--batch-size" in _one_line_error(res, code=2)
    res = _invoke("study", "--small-batch", "0", "--out", tmp_path / "study")
    assert "--small-batch" in _one_line_error(res, code=2)
    assert not (tmp_path / "run").exists() and not (tmp_path / "study").exists()


def test_train_prints_the_lr_used_and_warns_about_ignored_options(tmp_path):
    out = tmp_path / "scaled"
    res = _invoke("train", *FAST, "--lr-scaling", "--batch-size", "64", "--out", out)
    assert res.exit_code == 0, res.output
    resolved = json.loads((out / "config.json").read_text())["resolved_lr"]
    assert resolved != 0.01 and f"sgd lr {resolved:g} (0.01 scaled by 64/32)" in res.stderr

    res = _invoke("train", *FAST, "--optimizer", "adam", "--out", tmp_path / "plain")
    assert res.exit_code == 0 and "warning" not in res.stderr  # momentum left at its default
    res = _invoke("train", *FAST, "--optimizer", "adam", "--momentum", "0.5",
                  "--batch-size", "100000", "--out", tmp_path / "warned")
    assert res.exit_code == 0, res.output
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning")]
    assert len(warnings) == 2
    assert "--momentum 0.5 is ignored" in warnings[0] and "128 examples" in warnings[1]
    cfg = json.loads((tmp_path / "warned" / "config.json").read_text())
    assert cfg["resolved_batch"] == 128


STUDY_REFUSALS = [
    (("--dataset", "nope"), "unknown dataset"),
    (("--model", "nope"), "unknown model"),
    (("--device", "foo"), "foo"),
    (("--small-lr", "-1"), "small batch run: learning rate"),
    (("--large-lr", "nan"), "large batch run: learning rate"),
    (("--small-batch", "100", "--large-batch", "32"), "--small-batch 100 is larger than "
                                                        "--large-batch 32"),
    (("--small-batch", "full", "--large-batch", "64"), "--small-batch full (128 of 128 "
                                                       "examples) is larger"),
    (("--momentum", "2"), "momentum"),
]


@pytest.mark.parametrize("extra, message", STUDY_REFUSALS)
def test_study_refuses_bad_options_before_making_its_folder(tmp_path, extra, message):
    out = tmp_path / "study"
    error = _one_line_error(_invoke("study", *extra, "--train-subset", "128", "--test-subset",
                                    "64", "--out", out, "--quiet"))
    assert message in error
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_study_and_sweep_refuse_cuda_without_cuda(tmp_path):
    for command in ("study", "sweep", "demo"):
        out = tmp_path / command
        assert "CUDA is not available" in _one_line_error(
            _invoke(command, "--device", "cuda", "--out", out))
        assert not out.exists()


@pytest.mark.parametrize("extra, message", [
    (("--base-lr", "-1"), "--base-lr must be a positive number, got -1.0"),
    (("--max-lr", "0"), "--max-lr must be a positive number, got 0.0"),
    (("--dataset", "nope"), "unknown dataset"),
    (("--model", "nope"), "unknown model"),
])
def test_sweep_refuses_bad_options_before_making_its_folder(tmp_path, extra, message):
    out = tmp_path / "sweep"
    error = _one_line_error(_invoke("sweep", *extra, "--train-subset", "128", "--out", out))
    assert message in error
    assert not out.exists()


def test_sweep_drops_repeated_batch_sizes_with_a_note(tmp_path):
    out = tmp_path / "sweep"  # a bad model stops the sweep after the sizes are read
    res = _invoke("sweep", "--batch-sizes", "8,full,8,16", "--model", "nope", "--out", out)
    assert "note: --batch-sizes: dropped the repeated size(s) 8" in res.stderr
    assert "unknown model" in _one_line_error(res) and not out.exists()
    res = _invoke("sweep", "--batch-sizes", "8,0", "--out", out)
    assert "--batch-sizes" in _one_line_error(res, code=2) and not out.exists()
