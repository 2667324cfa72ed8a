import json

from click.testing import CliRunner

from cli.main import cli
from landscape import __version__, load_checkpoint


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
