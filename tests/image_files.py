"""Tiny image datasets written in exactly the formats torchvision keeps on disk (no download)."""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np


def write_cifar(root: Path, n_train: int = 20, n_test: int = 10, classes: int = 10,
                seed: int = 0) -> Path:
    """CIFAR-10 (``cifar-10-batches-py``: data_batch_1..5, test_batch, batches.meta) or, with
    ``classes=100``, CIFAR-100 (``cifar-100-python``: train, test, meta) under ``root``."""
    rng = np.random.default_rng(seed)
    hundred = classes == 100
    folder = Path(root) / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True, exist_ok=True)
    key = "fine_labels" if hundred else "labels"

    def batch(n):
        return {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                key: [int(v) for v in rng.integers(0, classes, n)],
                "filenames": [f"img{i}.png" for i in range(n)]}

    if hundred:
        files = {"train": batch(n_train), "test": batch(n_test),
                 "meta": {"fine_label_names": [f"c{i}" for i in range(100)],
                          "coarse_label_names": [f"s{i}" for i in range(20)]}}
    else:
        sizes = np.array_split(np.arange(n_train), 5)
        files = {f"data_batch_{i + 1}": batch(len(part)) for i, part in enumerate(sizes)}
        files["test_batch"] = batch(n_test)
        files["batches.meta"] = {"label_names": [f"c{i}" for i in range(10)]}
    for name, entry in files.items():
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    return folder


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte idx file: magic 0x0000 08 <ndim>, big-endian sizes, the data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_mnist(root: Path, n_train: int = 20, n_test: int = 10, gz: bool = False,
                folder: str = "MNIST", seed: int = 0) -> Path:
    """MNIST's four idx files under ``root/<folder>/raw`` (gzipped with ``gz``)."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        parts = {f"{prefix}-images-idx3-ubyte": rng.integers(0, 256, (n, 28, 28)),
                 f"{prefix}-labels-idx1-ubyte": rng.integers(0, 10, n)}
        for name, array in parts.items():
            blob = idx_bytes(array.astype(np.uint8))
            if gz:
                (raw / f"{name}.gz").write_bytes(gzip.compress(blob))
            else:
                (raw / name).write_bytes(blob)
    return raw
