"""Memory of training steps, connect and the sweep: estimates against traced peaks, and the
one-line refusals that name a setting that fits."""
import pytest
import torch
from click.testing import CliRunner

from cli_helpers import one_line_error
from landscape.checkpoint import save_checkpoint
from landscape.connect import ConnectOptions, connect, connect_batch_hint, connect_memory
from landscape.data import load_dataset
from landscape.models import build_model
from landscape.train import TrainConfig, train
from landscape.train_memory import step_profile, training_memory
from landscape.util.memory import TensorPeak
from landscape_cli.main import cli


@pytest.fixture(scope="module")
def bundle():
    return load_dataset("mnist1d", train_subset=2000, test_subset=500)


def test_full_batch_training_estimate_within_30_percent(bundle):
    model = build_model("mlp", bundle, seed=0, width=256)
    estimate = training_memory(model, bundle, 2000, weight_copies=1)  # SGD's momentum
    with TensorPeak() as peak:
        train(model, bundle, TrainConfig(batch_size="full", epochs=1, progress=False,
                                         device="cpu", checkpoint_every=0))
    assert 0.7 < estimate.total_added / peak.peak < 1.3, (estimate.added, peak.peak)


@pytest.mark.parametrize("batch", [64, 2000])
def test_connect_estimate_within_30_percent(bundle, batch):
    """Small batches: the evaluation along the paths makes the peak; the full batch: the
    bend's training step."""
    a, b = (build_model("cnn1d", bundle, seed=s, channels=16) for s in (0, 1))
    options = ConnectOptions(epochs=1, batch_size=batch, points=3, line=False, device="cpu")
    estimate = connect_memory(a, bundle, options)
    with TensorPeak() as peak:
        connect(a, b, bundle, options=options, progress=False)
    assert 0.7 < estimate.total_added / peak.peak < 1.3, (estimate.added, peak.peak)
    part = "activations and gradients of one step" if batch == 2000 else \
        "activations of one evaluation chunk"
    assert part in estimate.added


def test_step_profile_leaves_the_model_as_it_was(bundle):
    model = build_model("cnn1d", bundle, seed=0, channels=8, batchnorm=True).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    fixed, per = step_profile(model, bundle)
    assert fixed > 0 and per > 0
    assert not model.training and torch.equal(torch.get_rng_state(), rng)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in model.parameters())


@pytest.fixture(scope="module")
def pair(tmp_path_factory, bundle):
    folder = tmp_path_factory.mktemp("pair")
    paths = []
    for seed in (0, 1):
        path = folder / f"m{seed}.pt"
        save_checkpoint(path, build_model("mlp", bundle, seed=seed, width=256),
                        extra={"dataset": bundle.spec})
        paths.append(path)
    return paths


def test_connect_refuses_in_one_line_naming_the_batch_that_fits(bundle, pair, tmp_path):
    model = build_model("mlp", bundle, seed=0, width=256)
    full = ConnectOptions(batch_size=2000, device="cpu")
    small = ConnectOptions(batch_size=125, device="cpu")
    limit = (connect_memory(model, bundle, full).total_added
             + connect_memory(model, bundle, small).total_added) // 2
    hint = connect_batch_hint(model, bundle, full, limit)
    assert hint is not None and hint.startswith("--batch-size ")
    fitting = int(hint.split()[1])
    assert connect_memory(model, bundle, ConnectOptions(batch_size=fitting, device="cpu")
                          ).total_added <= limit < connect_memory(model, bundle, full).total_added
    out = tmp_path / "curve.h5"
    args = ["connect", *map(str, pair), "--train-subset", "2000", "--test-subset", "500",
            "--batch-size", "2000", "--epochs", "1", "--out", str(out), "--device", "cpu",
            "--quiet"]
    line = one_line_error(CliRunner().invoke(cli, [*args, "--max-memory", str(limit)]))
    assert "the curve's training needs about" in line and f"--batch-size {fitting} fits" in line
    assert not any(tmp_path.iterdir())
    # nothing fits: the refusal says so
    line = one_line_error(CliRunner().invoke(cli, [*args, "--max-memory", "1K"]))
    assert "no setting fits" in line and not any(tmp_path.iterdir())


def test_sweep_refuses_in_one_line_naming_the_subset_that_fits(tmp_path):
    from landscape.workflows.cost import sweep_memory
    from landscape.workflows.sweep import SweepConfig

    # the CLI's own model (cnn1d at its defaults), whose largest step, the Hessian run's
    # products on the training subset, shrinks with the subset (an MLP's is mostly the fixed
    # Lanczos basis and work space, which no subset shrinks)
    config = SweepConfig(train_subset=2000, test_subset=200, model="cnn1d",
                         batch_sizes=(32, "full"), device="cpu")
    data = load_dataset("mnist1d", train_subset=2000, test_subset=200)
    model = build_model("cnn1d", data, seed=0)
    needed = sweep_memory(model, data, config).total_added
    out = tmp_path / "sweep"
    args = ["sweep", "--model", "cnn1d", "--train-subset", "2000", "--test-subset", "200",
            "--batch-sizes", "32,full", "--device", "cpu", "--out", str(out), "--quiet"]
    result = CliRunner().invoke(cli, [*args, "--max-memory", str(int(needed * 0.6))])
    line = one_line_error(result)
    assert line.startswith("Error: the sweep needs about") and "--train-subset " in line
    fits = int(line.split("--train-subset ")[1].split()[0])
    assert fits < 2000
    assert not out.exists()
