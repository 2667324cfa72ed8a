"""Resuming an interrupted training run: the result equals the run that was never stopped."""
import json
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner

from landscape import TrainConfig, build_model, save_checkpoint, train
from landscape.errors import LandscapeError
from landscape_cli.main import cli

from cli_helpers import one_line_error

# 30 epochs of 16 steps: long enough that a kill lands mid-run, short enough for a test.
RUN = ("--model", "mlp", "--train-subset", "256", "--test-subset", "64", "--batch-size", "16",
       "--lr", "0.05", "--epochs", "30", "--checkpoint-every", "1", "--threads", "1", "--quiet")


def _files(run):
    """Every file of a run whose bytes must not depend on an interruption."""
    return ["model.pt"] + sorted(str(p.relative_to(run)) for p in run.glob("checkpoints/*.pt"))


def _same_weights(a, b):
    sa = torch.load(a, weights_only=True)["state_dict"]
    sb = torch.load(b, weights_only=True)["state_dict"]
    assert list(sa) == list(sb)
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


@pytest.mark.slow  # two fresh processes that import torch: 15-50 s on the shared machine
def test_sigkill_at_a_random_epoch_then_resume_is_bit_identical(tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    res = CliRunner().invoke(cli, ["train", *RUN, "--out", str(reference)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output

    epoch = random.randint(2, 15)
    proc = subprocess.Popen([sys.executable, "-m", "landscape_cli.main", "train", *RUN,
                             "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = killed / "checkpoints" / f"epoch_{epoch:04d}.pt"
    while not target.exists() and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill (epoch {epoch})"
    status = json.loads((killed / "history.json").read_text())["status"]
    assert status["complete"] is False
    assert (killed / "resume.pt").is_file() and (killed / "model.pt").is_file()

    # a plain re-run is refused and names --resume
    res = CliRunner().invoke(cli, ["train", *RUN, "--out", str(killed)])
    assert "--resume" in one_line_error(res)

    done = subprocess.run([sys.executable, "-m", "landscape_cli.main", "train", "--resume",
                           str(killed), "--threads", "1", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "test acc" in done.stdout
    _same_weights(reference / "model.pt", killed / "model.pt")
    assert _files(killed) == _files(reference)
    for name in _files(reference):
        assert (killed / name).read_bytes() == (reference / name).read_bytes(), name
    history = json.loads((killed / "history.json").read_text())
    assert history["status"]["complete"] is True
    assert [e["epoch"] for e in history["epochs"]] == list(range(1, 31))
    assert not (killed / "resume.pt").exists()


class _Stop(Exception):
    pass


@pytest.mark.parametrize("optimizer,track", [("sgd", 0), ("adam", 0), ("sgd", 1)])
def test_resume_after_an_interruption_equals_an_uninterrupted_run(tmp_path, mnist1d_small,
                                                                  optimizer, track):
    # dropout-free models draw no global random numbers; a global draw between the stop and the
    # resume checks that the torch, numpy and python generators come back from the state too.
    # With eigenvalue tracking, the warm start of its Lanczos runs is resumed as well.
    config = TrainConfig(optimizer=optimizer, lr=0.01, batch_size=32, epochs=4,
                         checkpoint_every=1, progress=False, track_eigenvalues=track)
    whole = build_model("mlp", mnist1d_small, seed=1)
    train(whole, mnist1d_small, config, out_dir=tmp_path / "whole")

    def stop_at_3(entry):
        if entry["epoch"] == 3:
            raise _Stop

    with pytest.raises(_Stop):
        train(build_model("mlp", mnist1d_small, seed=1), mnist1d_small, config,
              out_dir=tmp_path / "cut", callback=stop_at_3)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.rand(5)  # the generator moves on before the resume
    cut = build_model("mlp", mnist1d_small, seed=1)
    with torch.no_grad():  # the weights come from the resume state
        for p in cut.parameters():
            p.zero_()
    result = train(cut, mnist1d_small, config, out_dir=tmp_path / "cut", resume=True)
    assert [e["epoch"] for e in result.history] == [1, 2, 3, 4]
    whole_history = json.loads((tmp_path / "whole" / "history.json").read_text())["epochs"]
    for field in ("train_loss", "test_acc") + (("lambda_max",) if track else ()):
        assert [e[field] for e in result.history] == [e[field] for e in whole_history], field
    for (name, a), b in zip(whole.state_dict().items(), cut.state_dict().values()):
        assert torch.equal(a, b), name
    assert (tmp_path / "cut" / "model.pt").read_bytes() == \
        (tmp_path / "whole" / "model.pt").read_bytes()
    torch.manual_seed(0)
    assert torch.equal(torch.rand(3), expected)


def test_history_and_model_are_current_at_every_checkpoint(tmp_path, mnist1d_small):
    seen = []

    def look(entry):
        # called before the epoch's checkpoint: what is on disk is the previous epoch's
        run = tmp_path / "run"
        history = json.loads((run / "history.json").read_text())
        seen.append((entry["epoch"], [e["epoch"] for e in history["epochs"]]))
        final = torch.load(run / "model.pt", weights_only=True)["extra"]["final"]
        assert final.get("epoch", 0) == entry["epoch"] - 1

    config = TrainConfig(lr=0.01, batch_size=64, epochs=3, checkpoint_every=1, progress=False)
    train(build_model("mlp", mnist1d_small), mnist1d_small, config, out_dir=tmp_path / "run",
          callback=look)
    assert seen == [(1, []), (2, [1]), (3, [1, 2])]


def test_resume_refuses_other_settings_and_missing_state(tmp_path, mnist1d_small):
    config = TrainConfig(lr=0.01, batch_size=64, epochs=2, checkpoint_every=1, progress=False)
    model = build_model("mlp", mnist1d_small)
    with pytest.raises(LandscapeError, match="no interrupted run"):
        train(model, mnist1d_small, config, out_dir=tmp_path / "none", resume=True)
    def stop(entry):
        raise _Stop

    with pytest.raises(_Stop):
        train(build_model("mlp", mnist1d_small), mnist1d_small, config, out_dir=tmp_path / "run",
              callback=stop)
    other = TrainConfig(lr=0.5, batch_size=64, epochs=2, checkpoint_every=1, progress=False)
    with pytest.raises(LandscapeError, match="lr differ"):
        train(build_model("mlp", mnist1d_small), mnist1d_small, other, out_dir=tmp_path / "run",
              resume=True)
    save_checkpoint(tmp_path / "run" / "resume.pt", model)  # a checkpoint, not a resume state
    with pytest.raises(LandscapeError, match="not a resume state"):
        train(build_model("mlp", mnist1d_small), mnist1d_small, config,
              out_dir=tmp_path / "run", resume=True)


def test_cli_resume_errors_are_one_line(tmp_path):
    run = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", "--resume", str(run)])
    assert "not a training run folder" in one_line_error(res)
    res = CliRunner().invoke(cli, ["train", "--model", "mlp", "--train-subset", "64",
                                   "--test-subset", "32", "--epochs", "1", "--quiet",
                                   "--out", str(run)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["train", "--out", str(run), "--resume"])
    assert "nothing to resume" in one_line_error(res)
    res = CliRunner().invoke(cli, ["train", "--resume", str(run), "--lr", "0.1"])
    assert "drop --lr" in one_line_error(res)


def test_ctrl_c_says_how_to_resume(tmp_path, monkeypatch):
    import landscape

    real = landscape.train

    def interrupted(*args, **kwargs):
        def stop(entry):
            if entry["epoch"] == 2:
                raise KeyboardInterrupt
        return real(*args, callback=stop, **kwargs)

    monkeypatch.setattr(landscape, "train", interrupted)
    run = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", "--model", "mlp", "--train-subset", "64",
                                   "--test-subset", "32", "--epochs", "3", "--quiet",
                                   "--checkpoint-every", "1", "--out", str(run)])
    assert res.exit_code == 130
    assert f"landscape train --resume {run}" in res.stderr
    assert "surface" not in res.stderr
    monkeypatch.setattr(landscape, "train", real)
    res = CliRunner().invoke(cli, ["train", "--resume", str(run), "--quiet"])
    assert res.exit_code == 0, res.output
    history = json.loads((run / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2, 3]
