"""What a workflow starts from: the minima to compare and the data they are measured on.

``load_minima`` turns two or more checkpoints (or ``landscape train`` run folders) into
``Minimum`` records with file-safe names, labels, a key of their weights and what their
checkpoints record of training; it refuses fewer than two, labels that do not fit, networks
of different architectures and minima trained with different losses. ``compare_data`` picks
the data a comparison measures on; ``load_setup`` and ``open_run`` check and open the data and
output folder of a study or sweep before anything is trained.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch.nn as nn

from ..util import pick_device, sha256_tensors
from ..checkpoint import (check_dataset_code, checkpoint_labels, checkpoint_path,
                          load_checkpoint, trained_loss)
from ..data import DataBundle, load_dataset
from ..errors import LandscapeError
from ..models import build_model
from ..train import load_history
from .steps import Steps, step_key

__all__ = ["Minimum", "slug", "load_minima", "compare_data", "load_setup", "open_run"]


@dataclasses.dataclass(frozen=True)
class Minimum:
    """One model to compare.

    Attributes:
        name: file-safe name (output files, step names, summary keys).
        label: name shown in figures and the report.
        model: the network, in eval mode.
        key: hash of the weights and the model spec (what the steps depend on).
        path: its checkpoint (None for a model given in memory).
        train: the training settings its checkpoint records (``TrainConfig`` as a dict), if any.
        final: the last training record its checkpoint holds (``step``, metrics), if any.
        history: the ``history.json`` of its run folder, if it is a run's ``model.pt``.
        loss: the loss it was trained with.
    """

    name: str
    label: str
    model: nn.Module
    key: str
    path: Path | None = None
    train: dict[str, Any] | None = None
    final: dict[str, Any] | None = None
    history: dict[str, Any] | None = None
    loss: str = "cross_entropy"


def slug(label: str) -> str:
    """A file-safe name for a label (``small batch`` -> ``small_batch``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label.strip()).strip("._") or "model"


def _names(paths: list[Path], labels: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """``(labels, file-safe names)`` of the checkpoints, checked."""
    if len(paths) < 2:
        raise LandscapeError(f"compare needs at least two checkpoints, got {len(paths)}")
    labels = list(labels) if labels is not None else checkpoint_labels(paths)
    if len(labels) != len(paths):
        raise LandscapeError(f"{len(labels)} labels for {len(paths)} checkpoints")
    names = [slug(label) for label in labels]
    if len(set(names)) != len(names):
        raise LandscapeError(f"labels must differ (as file names they read {names}); give "
                             "--labels")
    return labels, names


def load_minima(checkpoints: Sequence[str | Path], labels: Sequence[str] | None = None
                ) -> tuple[list[Minimum], dict[str, Any] | None]:
    """Load checkpoints (or run folders) as minima to compare, with what their checkpoints
    record of their training; a run folder's ``history.json`` is read too.

    Args:
        checkpoints: two or more checkpoint files or run folders (see ``load_checkpoint`` for
            checkpoints that name code).
        labels: names in figures and the report (default: ``checkpoint_labels``, the run
            folder's name for a run's ``model.pt``).

    Returns:
        ``(minima, dataset)``: the minima and the dataset spec the first checkpoint records.

    Raises:
        LandscapeError: fewer than two, labels that do not fit, a missing or bad checkpoint,
            minima of different architectures or trained with different losses.
    """
    paths = [checkpoint_path(p) for p in checkpoints]
    labels, names = _names(paths, labels)
    minima, shapes, dataset = [], None, None
    for path, label, name in zip(paths, labels, names):
        model, info = load_checkpoint(path)
        extra = info.get("extra") or {}
        entries = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        if shapes is None:
            shapes, dataset = (entries, label), info.get("dataset")
        elif entries != shapes[0]:
            raise LandscapeError(f"{label!r} and {shapes[1]!r} are different networks (their "
                                 "parameters differ in names or shapes): compare minima of one "
                                 "architecture")
        history = None
        if path.name == "model.pt" and (path.parent / "history.json").is_file():
            history = load_history(path.parent)
        key = step_key(sha256_tensors(model.state_dict()), info.get("model"))
        minima.append(Minimum(name=name, label=label, model=model, key=key, path=path,
                              train=extra.get("config"), final=extra.get("final"),
                              history=history, loss=trained_loss(info)))
    losses = {m.loss for m in minima}
    if len(losses) > 1:
        raise LandscapeError(f"the checkpoints were trained with different losses "
                             f"({', '.join(sorted(losses))}): their curvatures do not compare")
    return minima, dataset


def compare_data(data: DataBundle | Mapping[str, Any] | None,
                 dataset: dict[str, Any] | None) -> DataBundle:
    """The data a comparison measures on.

    Args:
        data: a DataBundle (used as it is), keyword arguments of ``load_dataset``, or None.
        dataset: the dataset spec the first checkpoint records; with ``data`` None it is
            loaded (MNIST-1D if it records none), refusing a spec that names code unless
            that code is trusted.

    Returns:
        The DataBundle.
    """
    if isinstance(data, DataBundle):
        return data
    spec = dict(data) if data is not None else dict(dataset or {"name": "mnist1d"})
    if data is None:
        check_dataset_code(spec, "If you trust it, compare within "
                                 "checkpoint.trusted_code(True), or pass data=")
    return load_dataset(**spec)


def load_setup(config) -> Any:
    """The DataBundle of a study or sweep configuration, after checking that its device
    exists and its model builds on that data (cheap: nothing is trained or written).

    Args:
        config: a StudyConfig or SweepConfig (dataset, data_root, data_seed, train_subset,
            test_subset, model, model_options, seed, device).
    """

    pick_device(config.device)
    bundle = load_dataset(config.dataset, root=config.data_root, seed=config.data_seed,
                          train_subset=config.train_subset, test_subset=config.test_subset)
    build_model(config.model, bundle, seed=config.seed, **config.model_options)
    return bundle


def open_run(config, out_dir: str | Path, force: bool,
             log: Callable[[str], None] | None) -> tuple[Path, Callable[[str], None], Steps,
                                                         DataBundle]:
    """Start a study or sweep: its folder, logger, step record and data.

    Args:
        config: a StudyConfig or SweepConfig (see ``load_setup``).
        out_dir: the output folder (created).
        force: recompute every step.
        log: called with one line per step (None: silent).

    Returns:
        ``(out, log, steps, bundle)``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out, log or (lambda _msg: None), Steps(out, force), load_setup(config)
