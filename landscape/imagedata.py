"""MNIST, Fashion-MNIST and CIFAR-10/100 read from torchvision's on-disk formats, never downloaded.

Contract: ``read_image_dataset(name, root)`` returns ``(train, test, classes)`` with images as
float32 ``(N, C, H, W)`` tensors standardized per channel with the *training* split's mean and
standard deviation (the test split uses the same statistics) and int64 labels. The files are the
ones torchvision writes under ``root``:

- MNIST / Fashion-MNIST: the idx files under ``MNIST/raw`` (``FashionMNIST/raw``):
  ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte``, each raw or gzipped (``.gz``);
- CIFAR-10: the python pickles ``data_batch_1`` .. ``data_batch_5`` and ``test_batch`` under
  ``cifar-10-batches-py`` (labels under ``labels``);
- CIFAR-100: ``train`` and ``test`` under ``cifar-100-python`` (labels under ``fine_labels``).

No checksum is verified (a user's subset of the files, or files written by a test, load the same
way); a missing or malformed file raises one ``DataError`` naming the file and how to get it.
"""
from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from .errors import DataError

Split = tuple[torch.Tensor, torch.Tensor]

# name -> (torchvision class, classes, folder under root)
FORMATS = {
    "mnist": ("MNIST", 10, "MNIST/raw"),
    "fashion-mnist": ("FashionMNIST", 10, "FashionMNIST/raw"),
    "cifar10": ("CIFAR10", 10, "cifar-10-batches-py"),
    "cifar100": ("CIFAR100", 100, "cifar-100-python"),
}
_IDX = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_image_dataset(name: str, root: str | os.PathLike | None) -> tuple[Split, Split, int]:
    """Read a builtin image dataset from torchvision's files under ``root``.

    Args:
        name: ``mnist``, ``fashion-mnist``, ``cifar10`` or ``cifar100``.
        root: the folder passed to torchvision as ``root`` when the data was downloaded.

    Returns:
        ``(train, test, classes)``; images standardized with the training split's statistics.
    """
    cls_name, classes, sub = FORMATS[name]
    hint = f"download it once with torchvision.datasets.{cls_name}(root, download=True)"
    if root is None:
        raise DataError(f"dataset {name!r} needs --data-root: a folder holding {sub}/ ({hint})")
    folder = Path(root) / sub
    if not folder.is_dir():
        raise DataError(f"dataset {name!r} not found under {folder}: {hint}")
    reader = _read_cifar if name.startswith("cifar") else _read_idx_split
    train, test = (reader(folder, which, name, hint) for which in ("train", "test"))
    return *_standardize(train, test), classes


def _standardize(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]
                 ) -> tuple[Split, Split]:
    xtr = torch.from_numpy(train[0]).float().div_(255.0)
    xte = torch.from_numpy(test[0]).float().div_(255.0)
    mean = xtr.mean(dim=(0, 2, 3), keepdim=True)
    std = xtr.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return (((xtr - mean) / std, torch.from_numpy(train[1]).long()),
            ((xte - mean) / std, torch.from_numpy(test[1]).long()))


def _find(folder: Path, stem: str, name: str, hint: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"dataset {name!r}: {folder / stem} is missing: {hint}")


def _read_idx_split(folder: Path, which: str, name: str, hint: str
                    ) -> tuple[np.ndarray, np.ndarray]:
    images, labels = (read_idx(_find(folder, stem, name, hint)) for stem in _IDX[which])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"dataset {name!r}: {folder} holds {which} images of shape "
                        f"{images.shape} and labels of shape {labels.shape}")
    return images[:, None].astype(np.uint8), labels.astype(np.int64)


def read_idx(path: Path) -> np.ndarray:
    """One idx file (raw or gzipped) as a numpy array of its declared type and shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            blob = fh.read()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0 or blob[2] not in _IDX_TYPES:
        raise DataError(f"{path} is not an idx file (bad magic number)")
    ndim = blob[3]
    shape = tuple(int.from_bytes(blob[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[blob[2]])
    expected = 4 + 4 * ndim + int(np.prod(shape)) * dtype.itemsize
    if len(blob) != expected:
        raise DataError(f"{path}: {len(blob)} bytes where its header declares {expected}")
    return np.frombuffer(blob, dtype=dtype, offset=4 + 4 * ndim).reshape(shape)


def _read_cifar(folder: Path, which: str, name: str, hint: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "cifar100":
        stems, key = [which], "fine_labels"
    else:
        stems = [f"data_batch_{i}" for i in range(1, 6)] if which == "train" else ["test_batch"]
        key = "labels"
    parts = [_cifar_batch(_find(folder, stem, name, hint), key) for stem in stems]
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


def _cifar_batch(path: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            entry = pickle.load(fh, encoding="latin1")
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry[key], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path} is not a CIFAR batch (python pickle with 'data' and "
                        f"{key!r}): {exc}") from exc
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError(f"{path}: data of shape {data.shape} with {len(labels)} labels, "
                        "expected (N, 3072) and N labels")
    return data.reshape(-1, 3, 32, 32), labels
