"""MNIST and CIFAR read from torchvision's on-disk formats, on files the tests write."""
import pickle

import numpy as np
import pytest
import torch

from image_files import write_cifar, write_mnist
from landscape.data import load_dataset
from landscape.errors import DataError
from landscape.imagedata import read_idx


def _torchvision_reads(cls_name, root, monkeypatch):
    """torchvision's own reader on the same files (checksums skipped: the files are ours)."""
    import torchvision

    import torchvision.datasets.cifar as cifar

    cls = getattr(torchvision.datasets, cls_name)
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)
    return [cls(str(root), train=flag, download=False) for flag in (True, False)]


@pytest.mark.parametrize("classes,cls_name", [(10, "CIFAR10"), (100, "CIFAR100")])
def test_cifar_matches_torchvision(tmp_path, monkeypatch, classes, cls_name):
    write_cifar(tmp_path, n_train=23, n_test=7, classes=classes)
    bundle = load_dataset(f"cifar{classes}", root=tmp_path)
    assert bundle.train[0].shape == (23, 3, 32, 32) and bundle.test[0].shape == (7, 3, 32, 32)
    assert bundle.num_classes == classes and bundle.train[0].dtype == torch.float32
    tv_train, tv_test = _torchvision_reads(cls_name, tmp_path, monkeypatch)
    assert bundle.train[1].tolist() == list(tv_train.targets)
    assert bundle.test[1].tolist() == list(tv_test.targets)
    # undo the standardization: the pixels are torchvision's (N, H, W, C) uint8 images
    raw = torch.from_numpy(tv_train.data).permute(0, 3, 1, 2).float() / 255
    mean, std = raw.mean(dim=(0, 2, 3), keepdim=True), raw.std(dim=(0, 2, 3), keepdim=True)
    torch.testing.assert_close(bundle.train[0], (raw - mean) / std)
    # the test split uses the training split's statistics, not its own
    raw_test = torch.from_numpy(tv_test.data).permute(0, 3, 1, 2).float() / 255
    torch.testing.assert_close(bundle.test[0], (raw_test - mean) / std)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_matches_torchvision(tmp_path, monkeypatch, gz):
    write_mnist(tmp_path, n_train=12, n_test=5, gz=gz)
    bundle = load_dataset("mnist", root=tmp_path)
    assert bundle.train[0].shape == (12, 1, 28, 28) and bundle.test[0].shape == (5, 1, 28, 28)
    assert abs(float(bundle.train[0].mean())) < 1e-5
    if not gz:  # torchvision reads the uncompressed files
        tv_train, tv_test = _torchvision_reads("MNIST", tmp_path, monkeypatch)
        assert torch.equal(bundle.train[1], tv_train.targets.long())
        assert torch.equal(bundle.test[1], tv_test.targets.long())
        raw = tv_train.data.unsqueeze(1).float() / 255
        torch.testing.assert_close(bundle.train[0], (raw - raw.mean()) / raw.std())


def test_fashion_mnist_folder_and_subsets(tmp_path):
    write_mnist(tmp_path, n_train=30, n_test=10, folder="FashionMNIST")
    bundle = load_dataset("fashion-mnist", root=tmp_path, train_subset=8, test_subset=4)
    assert bundle.train[0].shape == (8, 1, 28, 28) and bundle.test[1].shape == (4,)
    assert load_dataset(**bundle.spec).train[0].equal(bundle.train[0])
    with pytest.raises(DataError, match="MNIST/raw"):  # the other dataset is not there
        load_dataset("mnist", root=tmp_path)


def test_missing_and_malformed_files_are_one_clear_error(tmp_path):
    folder = write_cifar(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3 is missing"):
        load_dataset("cifar10", root=tmp_path)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="not a CIFAR batch"):
        load_dataset("cifar10", root=tmp_path)
    (folder / "data_batch_3").write_bytes(pickle.dumps({"data": np.zeros((2, 10), np.uint8),
                                                        "labels": [0, 1]}))
    with pytest.raises(DataError, match=r"expected \(N, 3072\)"):
        load_dataset("cifar10", root=tmp_path)
    raw = write_mnist(tmp_path)
    blob = (raw / "train-images-idx3-ubyte").read_bytes()
    (raw / "train-images-idx3-ubyte").write_bytes(blob[:-5])
    with pytest.raises(DataError, match="header declares"):
        load_dataset("mnist", root=tmp_path)
    (raw / "train-images-idx3-ubyte").write_bytes(b"\x01\x02" + blob[2:])
    with pytest.raises(DataError, match="bad magic number"):
        read_idx(raw / "train-images-idx3-ubyte")
