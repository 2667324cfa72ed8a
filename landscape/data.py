"""Datasets as tensors: ``load_dataset(name) -> DataBundle``.

MNIST-1D is generated offline (the ``mnist1d`` package's generator, never its download) and
cached under the user cache folder. MNIST, Fashion-MNIST and CIFAR-10/100 are read from the files
torchvision keeps under a local root (``landscape.imagedata``), never downloaded.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import DataError
from .imagedata import read_image_dataset
from .modular import is_modular, modular_splits
from .userdata import absolute_name, load_user_format, user_format

Split = tuple[torch.Tensor, torch.Tensor]

BUILTIN = ("mnist1d", "mnist", "fashion-mnist", "cifar10", "cifar100")


@dataclasses.dataclass(frozen=True)
class DataBundle:
    """Train and test splits as ``(inputs, targets)`` tensors.

    Attributes:
        train: ``(inputs, targets)`` for training; inputs float32 (int64 token ids for the
            modular tables), targets int64 class indices.
        test: ``(inputs, targets)`` held out.
        num_classes: number of classes.
        name: dataset name (``mnist1d``, ``cifar10``, ``module:function``, ...).
        spec: the keyword arguments of ``load_dataset`` that rebuild this exact bundle.
    """

    train: Split
    test: Split
    num_classes: int
    name: str
    spec: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input example."""
        return tuple(self.train[0].shape[1:])

    def split(self, which: str) -> Split:
        """Return ``train`` or ``test``."""
        if which not in ("train", "test"):
            raise DataError(f"unknown split {which!r}: use 'train' or 'test'")
        return self.train if which == "train" else self.test

    def to(self, device: torch.device | str) -> "DataBundle":
        """A copy with all tensors on ``device``."""
        move = lambda s: (s[0].to(device), s[1].to(device))  # noqa: E731
        return dataclasses.replace(self, train=move(self.train), test=move(self.test))


def as_splits(data: Any) -> dict[str, Split]:
    """``{"train": (x, y), "test": (x, y)}`` of a DataBundle, or ``{"train": (x, y)}`` of a
    plain ``(inputs, targets)`` pair: the one way every computation accepts its data."""
    if isinstance(data, DataBundle):
        return {"train": data.train, "test": data.test}
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
        if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
            raise DataError("data must hold tensors: (inputs, targets)")
        return {"train": (x, y)}
    raise DataError("data must be a DataBundle or an (inputs, targets) pair")


def split_of(data: Any, split: str = "train") -> Split:
    """One split of a DataBundle or of a pair (whose only split is ``train``), checked to hold
    the same non-zero number of inputs and targets."""
    splits = as_splits(data)
    if split not in splits:
        if split not in ("train", "test"):
            raise DataError(f"unknown split {split!r}: use 'train' or 'test'")
        raise DataError(f"the {split} split needs a DataBundle, not an (inputs, targets) pair")
    x, y = splits[split]
    if len(x) != len(y) or len(y) == 0:
        raise DataError(f"data has {len(x)} inputs and {len(y)} targets: need the same "
                        "non-zero number")
    return x, y


def cache_dir() -> Path:
    """Folder for generated datasets: $LANDSCAPE_CACHE, else $XDG_CACHE_HOME/landscape."""
    env = os.environ.get("LANDSCAPE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "landscape"


def load_dataset(name: str = "mnist1d", root: str | os.PathLike | None = None, seed: int = 0,
                 train_subset: int | None = None, test_subset: int | None = None,
                 cache: bool = True, options: dict[str, Any] | None = None) -> DataBundle:
    """Load a dataset as tensors.

    Args:
        name: ``mnist1d`` (default, generated offline), ``mnist``, ``fashion-mnist``,
            ``cifar10``, ``cifar100`` (read from ``root``), a modular arithmetic table
            ``modular-<op>-<p>[-<fraction>]`` (``landscape.modular``; int64 token inputs,
            the split fixed by ``seed``), or a user loader as
            ``module:function`` / ``path/to/file.py:function`` returning
            ``(x_train, y_train, x_test, y_test)`` or a DataBundle, or a user's files as
            ``imagefolder:PATH``, ``npz:FILE``, ``npy:FOLDER``, ``csv:PATH`` (see
            ``landscape.userdata``).
        root: folder holding torchvision datasets (never downloaded).
        seed: generator seed for MNIST-1D and for subset selection.
        train_subset: keep this many training examples (fixed by ``seed``).
        test_subset: keep this many test examples (fixed by ``seed``).
        cache: cache generated MNIST-1D under ``cache_dir()``.
        options: options of a user's file format (``target``, ``size``, ``normalize``,
            ``test_fraction``; see ``landscape.userdata``).

    Returns:
        A DataBundle whose ``spec`` rebuilds it with ``load_dataset(**spec)``.
    """
    name = absolute_name(name)  # a stored spec loads from any folder
    spec = {"name": name, "root": str(root) if root is not None else None, "seed": seed,
            "train_subset": train_subset, "test_subset": test_subset}
    if options:
        if not user_format(name):
            raise DataError(f"dataset options ({', '.join(options)}) apply to a user's files "
                            f"(imagefolder:, npz:, npy:, csv:), not to {name!r}")
        spec["options"] = dict(options)
    if name == "mnist1d":
        train, test, classes = _mnist1d(seed, cache)
    elif is_modular(name):
        train, test, classes = modular_splits(name, seed)
    elif name in BUILTIN:
        train, test, classes = read_image_dataset(name, root)
    elif user_format(name):
        train, test, classes = load_user_format(name, options, seed)
    elif ":" in name:
        name = spec["name"] = absolute_code(name)
        train, test, classes = _user_loader(name)
    else:
        raise DataError(f"unknown dataset {name!r}: use one of {', '.join(BUILTIN)}, "
                        "modular-<op>-<p>[-<fraction>], module:function, or a user's files "
                        "as imagefolder:PATH, npz:FILE, npy:FOLDER, csv:PATH")
    train = _subset(train, train_subset, seed, "train")
    test = _subset(test, test_subset, seed + 1, "test")
    return DataBundle(train=train, test=test, num_classes=classes, name=name, spec=spec)


def _mnist1d(seed: int, cache: bool) -> tuple[Split, Split, int]:
    path = cache_dir() / f"mnist1d-seed{seed}.pt"
    if cache and path.exists():
        try:
            blob = torch.load(path, weights_only=True)
            return (blob["x"], blob["y"]), (blob["x_test"], blob["y_test"]), 10
        except Exception:  # a damaged cache is regenerated, never trusted
            pass
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:
        raise DataError("the mnist1d package is missing: pip install mnist1d") from exc
    args = get_dataset_args()
    args.seed = seed
    raw = make_dataset(args)
    blob = {k: torch.as_tensor(raw[k], dtype=torch.float32 if k.startswith("x") else torch.int64)
            for k in ("x", "y", "x_test", "y_test")}
    if cache:
        from .util import write_torch
        from .errors import WriteError
        try:
            write_torch(path, blob)
        except WriteError:
            pass  # an unwritable cache only costs time
    return (blob["x"], blob["y"]), (blob["x_test"], blob["y_test"]), 10


def code_file(spec: str) -> Path | None:
    """The file of a ``path/to/file.py:function`` spec (None for ``module:function``)."""
    target = spec.rpartition(":")[0]
    return Path(target) if target.endswith(".py") or os.sep in target else None


def absolute_code(spec: str) -> str:
    """``file.py:function`` with the file's path made absolute (a stored spec then works from
    any folder); other specs unchanged."""
    path = code_file(spec) if ":" in spec else None
    if path is None:
        return spec
    return f"{os.path.abspath(path)}:{spec.rpartition(':')[2]}"


def load_callable(spec: str, what: str) -> Callable[..., Any]:
    """Resolve ``module:function`` or ``path/to/file.py:function`` to the function."""
    target, _, func = spec.rpartition(":")
    if not target or not func:
        raise DataError(f"{what} {spec!r} is not of the form module:function")
    try:
        if target.endswith(".py") or os.sep in target:
            if not Path(target).is_file():
                raise DataError(f"{what} file {target!r} does not exist")
            mod_name = f"_landscape_user_{Path(target).stem}"
            mspec = importlib.util.spec_from_file_location(mod_name, target)
            module = importlib.util.module_from_spec(mspec)
            mspec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"cannot import {target!r} for {what} {spec!r}: {exc}") from exc
    fn = getattr(module, func, None)
    if not callable(fn):
        raise DataError(f"{what} {spec!r}: {target!r} has no function {func!r}")
    return fn


def _user_loader(spec: str) -> tuple[Split, Split, int]:
    out = load_callable(spec, "dataset")()
    if isinstance(out, DataBundle):
        return out.train, out.test, out.num_classes
    try:
        xtr, ytr, xte, yte = (torch.as_tensor(a) for a in out)
    except (TypeError, ValueError) as exc:
        raise DataError(f"dataset {spec!r} must return (x_train, y_train, x_test, y_test) "
                        "or a DataBundle") from exc
    ytr, yte = ytr.long(), yte.long()
    classes = int(max(ytr.max(), yte.max()).item()) + 1
    return (xtr.float(), ytr), (xte.float(), yte), classes


def _subset(split: Split, n: int | None, seed: int, which: str) -> Split:
    if n is None:
        return split
    total = len(split[1])
    if not 0 < n <= total:
        raise DataError(f"--{which}-subset {n} must be between 1 and {total}")
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(total, generator=gen)[:n].sort().values
    return split[0][idx], split[1][idx]
