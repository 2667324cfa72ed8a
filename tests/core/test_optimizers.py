"""Flat-minimum optimizers: SAM/ASAM steps against their closed forms, SWA's average, resume."""
import json

import pytest
import torch
from torch import nn

from landscape import TrainConfig, build_model, load_checkpoint, train
from landscape.errors import LandscapeError
from landscape.optimizers import SAM, frozen_batchnorm, take_step
from landscape.train import make_optimizer

from closed_forms import Quadratic, mean_output

A = torch.diag(torch.arange(1.0, 13.0, dtype=torch.float64))
THETA = torch.linspace(-1.0, 1.5, 12, dtype=torch.float64).reshape(3, 4)


def _one_step(optimizer_name, rho, lr, momentum=0.0):
    model = Quadratic(A, THETA)
    config = TrainConfig(optimizer=optimizer_name, sam_rho=rho, momentum=momentum)
    opt = make_optimizer(model.parameters(), config, lr)
    x, y = torch.zeros(5, 1), torch.zeros(5)
    opt.zero_grad()
    mean_output(model(x), y).backward()
    take_step(opt, lambda: mean_output(model(x), y).backward(), model)
    return model.theta.detach().reshape(-1)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sam_step_equals_the_formula_on_a_quadratic(momentum):
    # L = 0.5 t^T A t, g = A t; SAM: t' = t - lr A (t + rho g / |g|). The first momentum step
    # equals plain SGD (the buffer starts at the gradient).
    t, rho, lr = THETA.reshape(-1), 0.3, 0.05
    g = A @ t
    expected = t - lr * A @ (t + rho * g / g.norm())
    assert torch.allclose(_one_step("sam", rho, lr, momentum), expected, rtol=0, atol=1e-12)
    # and it differs from the plain gradient step by more than the tolerance
    assert (expected - (t - lr * g)).abs().max() > 1e-3


def test_asam_step_equals_the_formula_on_a_quadratic():
    # ASAM: e = rho T^2 g / |T g|, T = |t| + 0.01; t' = t - lr A (t + e).
    t, rho, lr = THETA.reshape(-1), 0.5, 0.05
    g = A @ t
    scale = t.abs() + 0.01
    e = rho * scale ** 2 * g / (scale * g).norm()
    expected = t - lr * A @ (t + e)
    assert torch.allclose(_one_step("asam", rho, lr), expected, rtol=0, atol=1e-12)
    sam = t - lr * A @ (t + rho * g / g.norm())
    assert (expected - sam).abs().max() > 1e-3


def test_sam_keeps_the_base_optimizer_state_and_lr():
    model = Quadratic(A, THETA)
    opt = make_optimizer(model.parameters(), TrainConfig(optimizer="sam", sam_base="adam"), 0.1)
    assert isinstance(opt, SAM) and isinstance(opt.base, torch.optim.Adam)
    assert opt.param_groups is opt.base.param_groups and opt.rho == 0.05
    asam = make_optimizer(model.parameters(), TrainConfig(optimizer="asam"), 0.1)
    assert asam.adaptive and asam.rho == 0.5


def test_frozen_batchnorm_keeps_running_statistics():
    bn = nn.BatchNorm1d(3)
    before = (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
    with frozen_batchnorm(bn):
        bn(torch.randn(8, 3) + 5)
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert torch.equal(bn.num_batches_tracked, before[2]) and bn.momentum == 0.1
    bn(torch.randn(8, 3) + 5)
    assert not torch.equal(bn.running_mean, before[0])


def test_sam_and_asam_train(mnist1d_small):
    for name in ("sam", "asam"):
        res = train(build_model("mlp", mnist1d_small), mnist1d_small,
                    TrainConfig(optimizer=name, lr=0.05, batch_size=32, epochs=5, progress=False))
        assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]


def _weights(path):
    return [t for k, t in torch.load(path, weights_only=True)["state_dict"].items()]


def test_swa_model_is_the_mean_of_the_averaged_iterates(tmp_path, mnist1d_small):
    config = TrainConfig(lr=0.05, batch_size=32, epochs=5, swa_start=3, checkpoint_every=1,
                         progress=False)
    model = build_model("mlp", mnist1d_small)
    res = train(model, mnist1d_small, config, out_dir=tmp_path)
    iterates = [_weights(tmp_path / "checkpoints" / f"epoch_{e:04d}.pt") for e in (3, 4, 5)]
    mean = [torch.stack(ts).mean(0) for ts in zip(*iterates)]
    averaged = _weights(tmp_path / "model.pt")
    for a, m in zip(averaged, mean):  # float32 running mean: a few ulps
        assert torch.allclose(a, m, rtol=1e-6, atol=1e-7)
    assert any(not torch.equal(a, b) for a, b in zip(averaged, iterates[-1]))
    for a, b in zip(_weights(tmp_path / "last.pt"), iterates[-1]):
        assert torch.equal(a, b)
    assert res.final["swa_models"] == 3
    status = json.loads((tmp_path / "history.json").read_text())["status"]
    assert status["swa"]["test_acc"] == res.final["test_acc"]
    _, info = load_checkpoint(tmp_path / "model.pt")
    assert info["extra"]["final"]["swa_models"] == 3


def test_swa_recomputes_batchnorm_statistics(mnist1d_small):
    # 256 examples in 8 equal batches: update_bn's cumulative mean of the batch means is
    # the mean over the data of the first BatchNorm layer's input.
    model = build_model("mlp", mnist1d_small, batchnorm=True)
    res = train(model, mnist1d_small, TrainConfig(lr=0.05, batch_size=32, epochs=4, swa_start=2,
                                                  progress=False, track_eigenvalues=2))
    assert res.final["swa_models"] == 3 and res.final["lambda_max"] > 0
    with torch.no_grad():
        pre = model[1](model[0](mnist1d_small.train[0]))
    assert torch.allclose(model[2].running_mean, pre.mean(0), rtol=1e-4, atol=1e-5)


class _Stop(Exception):
    pass


@pytest.mark.parametrize("optimizer,swa", [("sam", None), ("asam", 2), ("sgd", 2)])
def test_resume_with_sam_and_swa_equals_an_uninterrupted_run(tmp_path, mnist1d_small,
                                                             optimizer, swa):
    config = TrainConfig(optimizer=optimizer, lr=0.02, batch_size=32, epochs=4, swa_start=swa,
                         checkpoint_every=1, progress=False, track_eigenvalues=2)
    whole = build_model("mlp", mnist1d_small, seed=1)
    train(whole, mnist1d_small, config, out_dir=tmp_path / "whole")

    def stop_at_4(entry):  # after epoch 3's checkpoint: the average holds epochs 2 and 3
        if entry["epoch"] == 4:
            raise _Stop

    with pytest.raises(_Stop):
        train(build_model("mlp", mnist1d_small, seed=1), mnist1d_small, config,
              out_dir=tmp_path / "cut", callback=stop_at_4)
    cut = build_model("mlp", mnist1d_small, seed=1)
    with torch.no_grad():  # the weights come from the resume state
        for p in cut.parameters():
            p.zero_()
    result = train(cut, mnist1d_small, config, out_dir=tmp_path / "cut", resume=True)
    for (name, a), b in zip(whole.state_dict().items(), cut.state_dict().values()):
        assert torch.equal(a, b), name
    assert (tmp_path / "cut" / "model.pt").read_bytes() == \
        (tmp_path / "whole" / "model.pt").read_bytes()
    assert result.final.get("swa_models") == (3 if swa else None)


@pytest.mark.parametrize("fields,match", [
    (dict(optimizer="sam", sam_rho=0.0), "radius must be a positive"),
    (dict(optimizer="asam", sam_rho=-1.0), "radius must be a positive"),
    (dict(optimizer="sam", sam_base="lbfgs"), "unknown SAM base"),
    (dict(swa_start=0), "SWA start epoch must be >= 1"),
    (dict(swa_lr=0.1), "needs an SWA start"),
    (dict(optimizer="sharp"), "unknown optimizer"),
])
def test_bad_flat_minimum_settings(fields, match):
    with pytest.raises(LandscapeError, match=match):
        TrainConfig(**fields).validate()


def test_swa_start_after_the_last_epoch_is_refused(tmp_path, mnist1d_small):
    with pytest.raises(LandscapeError, match="after the last epoch"):
        train(build_model("mlp", mnist1d_small), mnist1d_small,
              TrainConfig(epochs=2, swa_start=3, progress=False), out_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


FAST = ("--model", "mlp", "--train-subset", "128", "--test-subset", "64", "--batch-size", "32",
        "--lr", "0.05", "--quiet")


@pytest.mark.parametrize("extra, message", [
    (("--optimizer", "sam", "--sam-rho", "0"), "radius must be a positive"),
    (("--optimizer", "asam", "--sam-rho", "-0.5"), "radius must be a positive"),
    (("--swa-start", "0"), "SWA start epoch must be >= 1"),
    (("--epochs", "2", "--swa-start", "3"), "after the last epoch"),
    (("--swa-lr", "0.1"), "needs an SWA start"),
])
def test_cli_bad_flat_minimum_options_are_one_line(tmp_path, extra, message):
    from click.testing import CliRunner

    from landscape_cli.main import cli

    from cli_helpers import one_line_error

    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", *FAST, "--epochs", "3", *extra, "--out", str(out)])
    assert message in one_line_error(res)
    assert not out.exists()


def test_cli_sam_with_swa_writes_the_average_and_the_last_iterate(tmp_path):
    from click.testing import CliRunner

    from landscape_cli.main import cli

    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", *FAST, "--epochs", "3", "--optimizer", "sam",
                                   "--swa-start", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "sam (rho 0.05, sgd), SWA from epoch 2" in res.stderr
    assert "weight average of the last 2 epochs" in res.stdout
    assert (out / "last.pt").is_file() and (out / "model.pt").is_file()
    assert json.loads((out / "config.json").read_text())["optimizer"] == "sam"
