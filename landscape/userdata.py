"""Users' data as they have it: image folders, NumPy archives and CSV tables.

Contract: ``load_user_format(name, options, seed)`` reads ``FORMAT:PATH`` and returns
``(train, test, num_classes)`` as ``data.load_dataset`` does for its built-in datasets:
inputs float32, targets int64 class indices ``0..C-1``. Formats:

- ``imagefolder:PATH``: torchvision's ``ImageFolder`` layout, ``PATH/train/<class>/*.png`` and
  ``PATH/test/<class>/*`` (or ``val``); images resized to ``options["size"]`` (an int or
  ``[height, width]``; default: the first image's size), RGB.
- ``npz:FILE``: arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``.
- ``npy:FOLDER``: the same four arrays as ``FOLDER/x_train.npy`` and so on.
- ``csv:FILE`` or ``csv:FOLDER`` (``train.csv`` and ``test.csv``) with ``options["target"]``
  naming the class column; every other column is a numeric feature. A single file is split
  into train and test (``options["test_fraction"]``, default 0.2) by ``seed``.

Class labels that are not ``0..C-1`` (strings, sparse integers) are numbered in sorted order.
``options["normalize"]`` (default True) standardizes inputs per channel (images) or per
feature with the training split's mean and standard deviation. Paths are made absolute, so a
stored spec loads from any folder. Every problem is one ``DataError`` naming the file.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import DataError

Split = tuple[torch.Tensor, torch.Tensor]
FORMATS = ("imagefolder", "npz", "npy", "csv")
ARRAYS = ("x_train", "y_train", "x_test", "y_test")
OPTIONS = ("target", "size", "normalize", "test_fraction")


def user_format(name: str) -> str | None:
    """The format of a ``FORMAT:PATH`` dataset name, or None for any other name."""
    head, sep, _ = name.partition(":")
    return head if sep and head in FORMATS else None


def absolute_name(name: str) -> str:
    """``FORMAT:PATH`` with PATH made absolute (other names unchanged)."""
    fmt = user_format(name)
    if fmt is None:
        return name
    return f"{fmt}:{os.path.abspath(os.path.expanduser(name.partition(':')[2]))}"


def load_user_format(name: str, options: dict[str, Any] | None = None, seed: int = 0
                     ) -> tuple[Split, Split, int]:
    """Read a ``FORMAT:PATH`` dataset (see the module's contract).

    Args:
        name: ``imagefolder:PATH``, ``npz:FILE``, ``npy:FOLDER`` or ``csv:PATH``.
        options: ``target`` (csv), ``size`` (imagefolder), ``normalize``, ``test_fraction``.
        seed: seed of the train/test split of a single CSV file.

    Raises:
        DataError: a missing path, missing arrays or columns, or mismatched lengths.

    Returns:
        ``(train, test, num_classes)``.
    """
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise DataError(f"unknown dataset option(s) {', '.join(unknown)}: use "
                        f"{', '.join(OPTIONS)}")
    fmt, path = user_format(name), Path(absolute_name(name).partition(":")[2])
    if not path.exists():
        raise DataError(f"dataset {name!r}: {str(path)!r} does not exist")
    if fmt == "imagefolder":
        xtr, ytr, xte, yte = _image_folder(path, options.get("size"))
    elif fmt == "csv":
        xtr, ytr, xte, yte = _csv(path, options.get("target"),
                                  float(options.get("test_fraction", 0.2)), seed)
    else:
        xtr, ytr, xte, yte = _arrays(path, fmt)
    ytr, yte, classes = _classes(ytr, yte, name)
    xtr, xte = _inputs(xtr, xte, bool(options.get("normalize", True)))
    for which, x, y in (("train", xtr, ytr), ("test", xte, yte)):
        if len(x) != len(y) or len(y) == 0:
            raise DataError(f"dataset {name!r}: the {which} split has {len(x)} inputs and "
                            f"{len(y)} targets: need the same non-zero number")
    return (xtr, ytr), (xte, yte), classes


def _arrays(path: Path, fmt: str) -> list[np.ndarray]:
    """The four arrays of an ``.npz`` file or a folder of ``.npy`` files."""
    if fmt == "npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                missing = [a for a in ARRAYS if a not in archive.files]
                if missing:
                    raise DataError(f"{str(path)!r} lacks array(s) {', '.join(missing)} (it "
                                    f"holds {', '.join(archive.files) or 'none'})")
                return [archive[a] for a in ARRAYS]
        except (OSError, ValueError) as exc:
            raise DataError(f"{str(path)!r} is not a readable .npz archive: {exc}") from exc
    missing = [f"{a}.npy" for a in ARRAYS if not (path / f"{a}.npy").is_file()]
    if missing:
        raise DataError(f"{str(path)!r} lacks {', '.join(missing)} (npy:FOLDER reads "
                        "x_train.npy, y_train.npy, x_test.npy, y_test.npy)")
    try:
        return [np.load(path / f"{a}.npy", allow_pickle=False) for a in ARRAYS]
    except (OSError, ValueError) as exc:
        raise DataError(f"{str(path)!r}: an array is not a readable .npy file: {exc}") from exc


def _image_folder(path: Path, size: Any) -> list[np.ndarray]:
    """Train and test images of an ImageFolder layout, resized, as (N, C, H, W) arrays."""
    from torchvision import datasets, transforms

    test_dir = next((path / d for d in ("test", "val") if (path / d).is_dir()), None)
    if not (path / "train").is_dir() or test_dir is None:
        raise DataError(f"{str(path)!r} needs train/ and test/ (or val/) folders, each "
                        "holding one folder of images per class")
    if size is None:
        first = datasets.ImageFolder(str(path / "train"))
        size = first.loader(first.samples[0][0]).size[::-1] if first.samples else 32
    shape = (int(size), int(size)) if np.isscalar(size) else tuple(int(s) for s in size)
    tf = transforms.Compose([transforms.Lambda(lambda im: im.convert("RGB")),
                             transforms.Resize(shape), transforms.ToTensor()])
    out, classes = [], None
    for folder in (path / "train", test_dir):
        try:
            ds = datasets.ImageFolder(str(folder), transform=tf)
        except (FileNotFoundError, OSError) as exc:
            raise DataError(f"{str(folder)!r}: {exc}") from exc
        if classes is not None and ds.classes != classes:
            raise DataError(f"{str(folder)!r} has classes {ds.classes}, train/ has {classes}")
        classes = ds.classes
        out += [torch.stack([ds[i][0] for i in range(len(ds))]).numpy(),
                np.asarray(ds.targets)]
    return out


def _csv(path: Path, target: str | None, fraction: float, seed: int) -> list[np.ndarray]:
    """Features and targets of CSV tables (one file split by ``seed``, or train/test.csv)."""
    if not target:
        raise DataError(f"csv dataset {str(path)!r} needs the class column: --target COLUMN")
    if path.is_dir():
        tables = [_read_table(path / f"{s}.csv", target) for s in ("train", "test")]
        return [*tables[0], *tables[1]]
    if not 0.0 < fraction < 1.0:
        raise DataError(f"test_fraction must be between 0 and 1, got {fraction}")
    x, y = _read_table(path, target)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = max(1, int(round(fraction * len(y))))
    if n_test >= len(y):
        raise DataError(f"{str(path)!r} has {len(y)} rows: too few to split")
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    return [x[train], y[train], x[test], y[test]]


def _read_table(path: Path, target: str) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{str(path)!r} does not exist")
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if len(rows) < 2:
        raise DataError(f"{str(path)!r} needs a header row and at least one data row")
    header, body = [h.strip() for h in rows[0]], [r for r in rows[1:] if r]
    if target not in header:
        raise DataError(f"{str(path)!r} has no column {target!r} (columns: "
                        f"{', '.join(header)})")
    col = header.index(target)
    features = [k for k in range(len(header)) if k != col]
    try:
        x = np.array([[float(r[k]) for k in features] for r in body], dtype=np.float32)
    except (ValueError, IndexError) as exc:
        raise DataError(f"{str(path)!r}: every column but {target!r} must be a number "
                        f"({exc})") from exc
    return x, np.array([r[col].strip() for r in body])


def _classes(ytr: np.ndarray, yte: np.ndarray, name: str) -> tuple[torch.Tensor, torch.Tensor,
                                                                    int]:
    """Targets as class indices 0..C-1 (labels numbered in sorted order unless they are)."""
    ytr, yte = np.asarray(ytr).reshape(-1), np.asarray(yte).reshape(-1)
    labels = np.unique(np.concatenate([ytr, yte]))
    if labels.dtype.kind in "iu" and labels.min() >= 0:
        classes = int(labels.max()) + 1
        return torch.as_tensor(ytr, dtype=torch.int64), torch.as_tensor(yte, dtype=torch.int64), \
            classes
    if labels.dtype.kind == "f" and np.all(labels == np.round(labels)) and labels.min() >= 0:
        return (torch.as_tensor(ytr.astype(np.int64)), torch.as_tensor(yte.astype(np.int64)),
                int(labels.max()) + 1)
    if labels.dtype.kind == "f":
        raise DataError(f"dataset {name!r}: targets must be class labels, got fractional "
                        "values")
    index = {v: k for k, v in enumerate(labels.tolist())}
    as_index = lambda y: torch.as_tensor([index[v] for v in y.tolist()], dtype=torch.int64)  # noqa: E731
    return as_index(ytr), as_index(yte), len(labels)


def _inputs(xtr: np.ndarray, xte: np.ndarray, normalize: bool
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs as float32 tensors, standardized per channel (images: axis 1) or per feature
    with the training split's statistics (a constant input stays 0) when ``normalize``."""
    try:
        xtr = torch.as_tensor(np.asarray(xtr, dtype=np.float32))
        xte = torch.as_tensor(np.asarray(xte, dtype=np.float32))
    except (TypeError, ValueError) as exc:
        raise DataError(f"inputs must be numbers: {exc}") from exc
    if xtr.ndim < 2 or xtr.shape[1:] != xte.shape[1:]:
        raise DataError(f"train inputs have shape {tuple(xtr.shape)}, test inputs "
                        f"{tuple(xte.shape)}: need (examples, features...) of one shape")
    if not normalize:
        return xtr, xte
    dims = (0, *range(2, xtr.ndim)) if xtr.ndim > 2 else (0,)
    mean = xtr.mean(dim=dims, keepdim=True)
    std = xtr.std(dim=dims, keepdim=True).clamp_min(1e-12)
    return (xtr - mean) / std, (xte - mean) / std
