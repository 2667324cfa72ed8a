import json
import math

import pytest
import torch

from landscape import TrainConfig, build_model, load_checkpoint, train
from landscape.errors import LandscapeError


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


def test_same_seed_is_bit_identical(mnist1d_small):
    runs = []
    for _ in range(2):
        model = build_model("mlp", mnist1d_small, seed=1)
        res = train(model, mnist1d_small, TrainConfig(epochs=3, batch_size=32, seed=5,
                                                      progress=False))
        runs.append((_params(model), res.history))
    assert all(torch.equal(a, b) for a, b in zip(runs[0][0], runs[1][0]))
    assert [h["train_loss"] for h in runs[0][1]] == [h["train_loss"] for h in runs[1][1]]
    model = build_model("mlp", mnist1d_small, seed=1)
    train(model, mnist1d_small, TrainConfig(epochs=3, batch_size=32, seed=6, progress=False))
    assert not all(torch.equal(a, b) for a, b in zip(runs[0][0], _params(model)))


@pytest.mark.parametrize("opt,lr", [("sgd", 0.05), ("rmsprop", 1e-3), ("rprop", 1e-3),
                                    ("adam", 1e-3), ("adamw", 1e-3)])
def test_every_optimizer_lowers_the_loss(mnist1d_small, opt, lr):
    model = build_model("mlp", mnist1d_small)
    res = train(model, mnist1d_small, TrainConfig(optimizer=opt, lr=lr, batch_size="full",
                                                  epochs=30, progress=False))
    first, last = res.history[0]["train_loss"], res.history[-1]["train_loss"]
    assert last < first and math.isfinite(last)


def test_run_folder_contents(tmp_path, mnist1d_small):
    model = build_model("mlp", mnist1d_small)
    res = train(model, mnist1d_small, TrainConfig(epochs=4, checkpoint_every=2, progress=False),
                out_dir=tmp_path)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["epoch_0000.pt", "epoch_0002.pt", "epoch_0004.pt"]
    hist = json.loads((tmp_path / "history.json").read_text())
    assert len(hist["epochs"]) == 4 and hist["status"]["diverged"] is False
    assert (tmp_path / "history.csv").read_text().startswith("train_loss,")
    loaded, info = load_checkpoint(tmp_path / "model.pt")
    assert all(torch.equal(a, b) for a, b in zip(loaded.parameters(), model.parameters()))
    assert info["extra"]["final"]["epoch"] == 4 and res.final["epoch"] == 4


def test_steps_schedules_and_scaling(mnist1d_small):
    model = build_model("mlp", mnist1d_small)
    res = train(model, mnist1d_small, TrainConfig(steps=10, batch_size=64, schedule="cosine",
                                                  lr_scaling=True, progress=False))
    assert res.final["step"] == 10 and res.final["lr"] < 0.01 * 2
    res = train(build_model("mlp", mnist1d_small), mnist1d_small,
                TrainConfig(epochs=4, schedule="step", step_epochs=2, gamma=0.5, progress=False))
    assert [h["lr"] for h in res.history] == pytest.approx([0.01, 0.01, 0.005, 0.005])


def test_small_batch_warns(mnist1d_small):
    with pytest.warns(UserWarning, match="smaller than the number of classes"):
        train(build_model("mlp", mnist1d_small), mnist1d_small,
              TrainConfig(epochs=1, batch_size=4, progress=False))


def test_divergence_stops_and_keeps_checkpoints(tmp_path, mnist1d_small):
    model = build_model("mlp", mnist1d_small)
    res = train(model, mnist1d_small, TrainConfig(lr=1e6, momentum=0.0, epochs=20,
                                                  progress=False), out_dir=tmp_path)
    assert res.diverged and "diverged" in res.message
    assert (tmp_path / "checkpoints" / "epoch_0000.pt").exists()
    assert not (tmp_path / "model.pt").exists()
    assert json.loads((tmp_path / "history.json").read_text())["status"]["diverged"]


@pytest.mark.parametrize("bad", [dict(optimizer="lbfgs"), dict(batch_size=0),
                                 dict(batch_size="half"), dict(lr=-1.0), dict(epochs=0),
                                 dict(schedule="exp"), dict(loss="hinge")])
def test_bad_config(bad):
    with pytest.raises(LandscapeError):
        TrainConfig(**bad).validate()


# The default pair's generalization gap (small batch tests better, both fit the data) is
# checked on the real budgets by tests/test_study.py, which trains exactly that pair.
