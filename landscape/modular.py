"""Modular arithmetic tables as a dataset (the grokking setting): ``modular_splits(name, seed)``.

A dataset name ``modular-<op>-<p>[-<fraction>]`` (``modular-add-97``, ``modular-div-59-0.4``)
names the whole table of ``a <op> b mod p`` over ``0 <= a, b < p`` (``b != 0`` for ``div``).
Each example's input is the three token ids ``(a, b, p)``, ``p`` standing for "=" (a
vocabulary of ``p + 1`` tokens), as int64; its target is the class ``a <op> b mod p``, so
there are ``p`` classes. A permutation seeded by the data seed puts ``fraction`` of the table
(default 0.3) in the training split and the rest in the test split. The name alone rebuilds
the data: it is what a checkpoint's dataset spec stores.
"""
from __future__ import annotations

import re

import torch

from .errors import DataError

PREFIX = "modular-"
OPERATIONS = ("add", "sub", "mul", "div")
DEFAULT_FRACTION = 0.3
MAX_MODULUS = 1000
"""Largest modulus accepted: the table has p^2 examples (a million at 1000)."""

_NAME = re.compile(r"^modular-([a-z]+)-(\d+)(?:-([0-9.]+))?$")

Split = tuple[torch.Tensor, torch.Tensor]


def is_modular(name: str) -> bool:
    """Whether a dataset name is a modular arithmetic table."""
    return isinstance(name, str) and name.startswith(PREFIX)


def parse_name(name: str) -> tuple[str, int, float]:
    """``(operation, modulus, train fraction)`` of a ``modular-<op>-<p>[-<fraction>]`` name.

    Raises:
        DataError: a malformed name, an unknown operation, a modulus below 2 or above
            ``MAX_MODULUS`` (or not prime for ``div``), or a fraction outside (0, 1).
    """
    match = _NAME.match(name)
    if match is None:
        raise DataError(f"dataset {name!r} is not modular-<op>-<p>[-<fraction>] (e.g. "
                        "modular-add-97 or modular-add-97-0.3)")
    op, p, fraction = match.group(1), int(match.group(2)), match.group(3)
    if op not in OPERATIONS:
        raise DataError(f"dataset {name!r}: unknown operation {op!r}, use one of "
                        f"{', '.join(OPERATIONS)}")
    if not 2 <= p <= MAX_MODULUS:
        raise DataError(f"dataset {name!r}: the modulus must be between 2 and {MAX_MODULUS}")
    if op == "div" and not _is_prime(p):
        raise DataError(f"dataset {name!r}: division mod {p} needs a prime modulus")
    try:
        frac = DEFAULT_FRACTION if fraction is None else float(fraction)
    except ValueError:
        raise DataError(f"dataset {name!r}: {fraction!r} is not a fraction") from None
    if not 0.0 < frac < 1.0:
        raise DataError(f"dataset {name!r}: the training fraction must be in (0, 1), got "
                        f"{frac:g}")
    return op, p, frac


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % k for k in range(2, int(n ** 0.5) + 1))


def table(op: str, p: int) -> Split:
    """Every example of ``a <op> b mod p``: inputs (n, 3) int64 ``(a, b, p)``, targets (n,)."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    if op == "div":  # a / b = a * b^(p-2) mod p (Fermat), b = 0 has no inverse
        keep = b != 0
        a, b = a[keep], b[keep]
        inverse = torch.tensor([pow(int(v), p - 2, p) for v in range(p)])
        target = (a * inverse[b]) % p
    else:
        target = {"add": a + b, "sub": a - b, "mul": a * b}[op] % p
    inputs = torch.stack([a, b, torch.full_like(a, p)], dim=1)
    return inputs, target


def modular_splits(name: str, seed: int = 0) -> tuple[Split, Split, int]:
    """The train and test splits of a modular table and its number of classes.

    Args:
        name: ``modular-<op>-<p>[-<fraction>]``.
        seed: seed of the permutation that picks the training examples.

    Returns:
        ``(train, test, p)``; each split ``(inputs, targets)`` in the table's order.
    """
    op, p, fraction = parse_name(name)
    inputs, targets = table(op, p)
    n = len(targets)
    n_train = round(fraction * n)
    if not 0 < n_train < n:
        raise DataError(f"dataset {name!r}: a fraction {fraction:g} of {n} examples leaves "
                        "a split empty")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    train_idx, test_idx = order[:n_train].sort().values, order[n_train:].sort().values
    return ((inputs[train_idx], targets[train_idx]), (inputs[test_idx], targets[test_idx]), p)
