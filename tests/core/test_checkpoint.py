import pytest
import torch

from landscape.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from landscape.errors import CheckpointError
from landscape.models import build_model


def test_roundtrip_needs_no_flags(tmp_path, mnist1d_small):
    model = build_model("cnn1d", mnist1d_small, seed=3, batchnorm=True)
    with torch.no_grad():
        model[2].running_mean.add_(1.5)  # buffers travel too
    path = save_checkpoint(tmp_path / "m.pt", model, extra={"epoch": 4})
    loaded, info = load_checkpoint(path)
    for (n, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), n
    assert info["dataset"]["name"] == "mnist1d" and info["dataset"]["train_subset"] == 256
    assert info["extra"]["epoch"] == 4 and not loaded.training
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left


def test_wrong_architecture_is_clear(tmp_path, mnist1d_small):
    path = save_checkpoint(tmp_path / "m.pt", build_model("cnn1d", mnist1d_small))
    other = build_model("mlp", mnist1d_small)
    with pytest.raises(CheckpointError, match="does not fit model"):
        load_checkpoint(path, model=other)


def test_missing_corrupt_and_foreign(tmp_path, mnist1d_small):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save(build_model("mlp", mnist1d_small).state_dict(), foreign)
    with pytest.raises(CheckpointError, match="not a landscape checkpoint"):
        read_checkpoint(foreign)


def test_plain_module_cannot_be_saved(tmp_path):
    with pytest.raises(CheckpointError, match="build_model"):
        save_checkpoint(tmp_path / "x.pt", torch.nn.Linear(2, 2))
    assert not (tmp_path / "x.pt").exists()
