import json
import math

import pytest
import torch

from landscape import TrainConfig, build_model, load_checkpoint, train
from landscape.errors import LandscapeError
from landscape.train import make_optimizer


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
                                 dict(schedule="exp"), dict(loss="hinge"),
                                 dict(momentum=-0.1), dict(momentum=1.0),
                                 dict(momentum=float("nan")), dict(weight_decay=-1e-4),
                                 dict(weight_decay=float("inf")),
                                 dict(optimizer="rprop", weight_decay=1e-4)])
def test_bad_config(bad):
    with pytest.raises(LandscapeError):
        TrainConfig(**bad).validate()


@pytest.mark.parametrize("good", [dict(momentum=0.0), dict(momentum=0.99),
                                  dict(weight_decay=0.0), dict(weight_decay=5e-4),
                                  dict(optimizer="adam", momentum=0.5),
                                  dict(optimizer="rprop", weight_decay=0.0)])
def test_edge_values_pass_validation_and_torch(good, mnist1d_small):
    config = TrainConfig(**good)
    config.validate()  # and the optimizer accepts what validation accepts
    make_optimizer(build_model("mlp", mnist1d_small).parameters(), config, config.lr)


# The default pair's generalization gap (small batch tests better, both fit the data) is
# checked on the real budgets by tests/test_study.py, which trains exactly that pair.


class _NanAtStep(torch.nn.Module):
    """Wraps a model; its output is NaN in the ``bad``-th training forward pass (0-based)."""

    def __init__(self, inner, bad):
        super().__init__()
        self.inner, self.bad, self.calls = inner, bad, 0

    def forward(self, x):
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls - 1 == self.bad:
                return out * float("nan")
        return out


def test_divergence_names_the_first_nonfinite_step(mnist1d_small):
    model = _NanAtStep(build_model("mlp", mnist1d_small), bad=19)
    res = train(model, mnist1d_small, TrainConfig(epochs=5, batch_size=32, progress=False))
    # 256 examples / 32 = 8 steps per epoch: step 19 is in epoch 3
    assert res.diverged
    assert "epoch 3, step 19:" in res.message and "nan" in res.message
    assert [h["epoch"] for h in res.history] == [1, 2]


def test_compiled_training_equals_eager_and_saves_plain_checkpoints(tmp_path, mnist1d_small):
    runs = {}
    for compiled in (False, True):
        model = build_model("cnn1d", mnist1d_small, seed=3)
        out = tmp_path / str(compiled)
        config = TrainConfig(epochs=2, batch_size=48, seed=1, progress=False,
                             compile=compiled, compile_backend="aot_eager")
        runs[compiled] = (train(model, mnist1d_small, config, out_dir=out), out)
    eager, compiled = runs[False][0], runs[True][0]
    for a, b in zip(eager.history, compiled.history):  # 256 = 5 x 48 + 16: a recompile
        for key in ("train_loss", "test_loss", "batch_loss"):
            assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-7), key
    loaded, _ = load_checkpoint(runs[True][1] / "model.pt")
    reference, _ = load_checkpoint(runs[False][1] / "model.pt")
    assert list(loaded.state_dict()) == list(reference.state_dict())  # no _orig_mod. prefix
    for name, t in reference.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], t, rtol=1e-5, atol=1e-6)


def test_unknown_compile_backend_is_refused():
    with pytest.raises(LandscapeError, match="unknown torch.compile backend 'nope'"):
        TrainConfig(compile=True, compile_backend="nope").validate()
