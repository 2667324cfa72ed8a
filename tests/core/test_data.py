import pytest
import torch

from landscape.data import cache_dir, load_dataset
from landscape.errors import DataError


def test_mnist1d_shapes_and_classes(mnist1d_full):
    b = mnist1d_full
    assert b.train[0].shape == (4000, 40) and b.test[0].shape == (1000, 40)
    assert b.train[0].dtype == torch.float32 and b.train[1].dtype == torch.int64
    assert b.num_classes == 10 and set(b.train[1].tolist()) == set(range(10))
    assert b.input_shape == (40,)


def test_mnist1d_deterministic_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path))
    a = load_dataset("mnist1d", seed=3)
    assert (tmp_path / "mnist1d-seed3.pt").exists()
    b = load_dataset("mnist1d", seed=3)  # from cache
    assert torch.equal(a.train[0], b.train[0]) and torch.equal(a.test[1], b.test[1])
    c = load_dataset("mnist1d", seed=3, cache=False)  # regenerated
    assert torch.equal(a.train[0], c.train[0])
    d = load_dataset("mnist1d", seed=4, cache=False)
    assert not torch.equal(a.train[0], d.train[0])


def test_corrupt_cache_is_regenerated(tmp_path, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path))
    (tmp_path / "mnist1d-seed5.pt").write_bytes(b"not a tensor file")
    b = load_dataset("mnist1d", seed=5)
    assert b.train[0].shape == (4000, 40)


def test_subsets_are_fixed_by_seed():
    a = load_dataset("mnist1d", train_subset=100, test_subset=50, seed=0)
    b = load_dataset("mnist1d", train_subset=100, test_subset=50, seed=0)
    assert a.train[0].shape == (100, 40) and a.test[0].shape == (50, 40)
    assert torch.equal(a.train[0], b.train[0])
    assert a.spec["train_subset"] == 100
    again = load_dataset(**a.spec)
    assert torch.equal(again.test[0], a.test[0])


def test_bad_subset_and_unknown_name():
    with pytest.raises(DataError, match="between 1 and 4000"):
        load_dataset("mnist1d", train_subset=5000)
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("imagenet")


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10", "cifar100"])
def test_torchvision_missing_root_is_clear(tmp_path, name):
    with pytest.raises(DataError, match="--data-root"):
        load_dataset(name)
    with pytest.raises(DataError, match="not found under"):
        load_dataset(name, root=tmp_path)


def test_user_loader_from_file(tmp_path):
    src = tmp_path / "mydata.py"
    src.write_text(
        "import torch\n"
        "def make():\n"
        "    g = torch.Generator().manual_seed(0)\n"
        "    x = torch.randn(30, 4, generator=g)\n"
        "    y = torch.arange(30) % 3\n"
        "    return x[:20], y[:20], x[20:], y[20:]\n")
    b = load_dataset(f"{src}:make")
    assert b.num_classes == 3 and b.train[0].shape == (20, 4)
    with pytest.raises(DataError, match="has no function"):
        load_dataset(f"{src}:nothing")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"{tmp_path}/missing.py:make")


def test_bundle_split_and_to():
    b = load_dataset("mnist1d", train_subset=10, test_subset=10)
    assert b.split("test") is b.test
    with pytest.raises(DataError):
        b.split("valid")
    assert b.to("cpu").train[0].device.type == "cpu"


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("LANDSCAPE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "landscape"
