"""A grid of training recipes, each trained and measured, sharded over processes or machines.

Contract: ``run_recipes(grid, out, shard=(I, N))`` trains and measures the recipes whose index
``i`` has ``i % N == I`` (every recipe for ``(0, 1)``) into ``out/runs/<name>/``, each run
under its own folder lock, its row written atomically as ``row.json`` when it is measured (a
row whose key matches the grid's settings is reused; a run killed before its row continues
from its ``resume.pt``). A recipe another process is running is left to it. Whichever process
finds every row done writes ``summary.json`` (``runs``, ``correlations``, ``axes``,
``comparisons``, ``findings``) under the folder's report lock; the rows are read back from
disk, so one process and N shards write the same numbers. Nothing here plots.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from ..data import load_dataset
from ..errors import LandscapeError, WriteError
from ..generalization import correlations
from ..measures import MEASURES, MeasureOptions, coarse_notes, measure_model
from ..models import build_model
from ..train import TrainConfig, train
from ..util import output_lock, provenance, write_json
from .recipes_report import findings, write_report

AXES = ("batch_size", "lr", "optimizer", "weight_decay", "seed")
"""The settings a recipe varies, in name order (the seed is held fixed in granulated taus)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecipeGrid:
    """The recipes: every combination of the axes, with the shared settings.

    Attributes:
        dataset, data_root, train_subset, test_subset, data_seed: the data.
        model, model_options: the network (initialized with each recipe's seed).
        batch_sizes, lrs, optimizers, weight_decays, seeds: the axes.
        epochs, momentum, sam_rho: shared training settings (SGD-type momentum; SAM radius,
            None for each optimizer's default).
        measures: how the measures are computed.
        resamples: bootstrap resamples of each tau's interval.
        max_train_error: runs whose final train error is at or above this are not minima:
            they stay in ``runs`` (``left_out``) but out of every tau and comparison (None:
            every run counts). It changes no run, so finished runs are reused.
        device: torch device.
    """

    dataset: str = "mnist1d"
    data_root: str | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    data_seed: int = 0
    model: str = "cnn1d"
    model_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    batch_sizes: tuple[int | str, ...] = (32, 256)
    lrs: tuple[float, ...] = (0.02, 0.1)
    optimizers: tuple[str, ...] = ("sgd", "sam")
    weight_decays: tuple[float, ...] = (0.0,)
    seeds: tuple[int, ...] = (0, 1)
    epochs: int = 15
    momentum: float = 0.9
    sam_rho: float | None = None
    measures: MeasureOptions = MeasureOptions()
    resamples: int = 1000
    max_train_error: float | None = None
    device: str | None = None

    QUICK: ClassVar[dict[str, Any]] = dict(
        train_subset=800, test_subset=500, batch_sizes=(32, 256), lrs=(0.02, 0.1),
        optimizers=("sgd", "sam"), seeds=(0, 1), epochs=10)
    """``quick()``: batch x lr x SGD/SAM x two seeds, 16 small runs."""

    @classmethod
    def quick(cls, **overrides: Any) -> "RecipeGrid":
        """The ``QUICK`` grid with ``MeasureOptions.quick()`` measures (coarser: the summary's
        ``coarse`` and ``warnings`` say which, and by how much); ``overrides`` win."""
        return cls(**{**cls.QUICK, "measures": MeasureOptions.quick(), **overrides})

    def recipes(self) -> list[dict[str, Any]]:
        """Every recipe's settings (``AXES`` -> value), in a fixed order."""
        return [dict(zip(AXES, values)) for values in itertools.product(
            self.batch_sizes, self.lrs, self.optimizers, self.weight_decays, self.seeds)]

    def train_config(self, recipe: Mapping[str, Any], progress: bool = False) -> TrainConfig:
        """The TrainConfig of one recipe."""
        return TrainConfig(optimizer=recipe["optimizer"], lr=recipe["lr"],
                           batch_size=recipe["batch_size"], weight_decay=recipe["weight_decay"],
                           seed=recipe["seed"], epochs=self.epochs, momentum=self.momentum,
                           sam_rho=self.sam_rho, device=self.device, progress=progress,
                           checkpoint_every=max(1, self.epochs // 5))

    def validate(self) -> None:
        """Raise LandscapeError, naming the axis value, for a recipe that cannot train."""
        axes = (self.batch_sizes, self.lrs, self.optimizers, self.weight_decays, self.seeds)
        if any(len(values) == 0 for values in axes):
            raise LandscapeError("every axis of the sweep needs at least one value")
        if self.max_train_error is not None and not 0 < self.max_train_error <= 1:
            raise LandscapeError(f"max_train_error {self.max_train_error} must be in (0, 1]")
        for recipe in self.recipes():
            try:
                self.train_config(recipe).validate()
            except LandscapeError as exc:
                raise LandscapeError(f"the recipe {run_name(recipe)} cannot train: {exc}"
                                     ) from None

    def data(self):
        """The grid's DataBundle (its dataset, subsets and data seed)."""
        return load_dataset(self.dataset, root=self.data_root, seed=self.data_seed,
                            train_subset=self.train_subset, test_subset=self.test_subset)

    def varying(self) -> list[str]:
        """The axes with more than one value, the seed left out."""
        return [a for a, values in zip(AXES, (self.batch_sizes, self.lrs, self.optimizers,
                                              self.weight_decays, self.seeds))
                if len(values) > 1 and a != "seed"]


def run_name(recipe: Mapping[str, Any]) -> str:
    """The folder name of a recipe, e.g. ``bs32_lr0.02_sam_wd0_s1``."""
    return (f"bs{recipe['batch_size']}_lr{recipe['lr']:g}_{recipe['optimizer']}_"
            f"wd{recipe['weight_decay']:g}_s{recipe['seed']}")


def parse_shard(text: str | None, env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``"I/N"`` -> (I, N); ``"auto"``: ``RANK``/``WORLD_SIZE`` (torchrun) or
    ``SLURM_ARRAY_TASK_ID``/``SLURM_ARRAY_TASK_COUNT`` (a Slurm job array); None -> (0, 1).

    Raises:
        LandscapeError: a malformed shard, ``I >= N``, or ``auto`` without either pair.
    """
    env = os.environ if env is None else env
    if text is None:
        return 0, 1
    if text == "auto":
        for rank, size in (("RANK", "WORLD_SIZE"),
                           ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT")):
            if rank in env and size in env:
                return parse_shard(f"{env[rank]}/{env[size]}", {})
        raise LandscapeError("--shard auto needs RANK and WORLD_SIZE (torchrun) or "
                             "SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT (a Slurm array)")
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise LandscapeError(f"--shard {text!r}: use I/N (e.g. 0/4) or auto") from None
    if not (count >= 1 and 0 <= index < count):
        raise LandscapeError(f"--shard {text!r}: need 0 <= I < N")
    return index, count


def run_recipes(grid: RecipeGrid, out: str | Path, *, shard: tuple[int, int] = (0, 1),
                progress: bool = False, log: Callable[[str], None] | None = print
                ) -> dict[str, Any] | None:
    """Train and measure this shard's recipes; write the summary if every run is done.

    Returns:
        The content of ``summary.json`` when this process wrote it, else None.
    """
    say = log or (lambda _msg: None)
    grid.validate()
    out = Path(out)
    bundle = grid.data()
    recipes = grid.recipes()
    index, count = shard
    for i, recipe in enumerate(recipes):
        if i % count == index:
            say(f"[{i + 1}/{len(recipes)}] {run_name(recipe)}")
            _run_one(grid, bundle, recipe, out, progress, say)
    rows = [_current_row(grid, bundle, r, out) for r in recipes]
    missing = [run_name(r) for r, row in zip(recipes, rows) if row is None]
    if missing:
        say(f"{len(recipes) - len(missing)} of {len(recipes)} runs done; the process that "
            "finds every run done writes the summary (a plain rerun finishes the rest)")
        return None
    return _write_summary(grid, bundle, rows, out)


def _key(grid: RecipeGrid, bundle, recipe: Mapping[str, Any]) -> str:
    """What a row depends on: the recipe, the shared training settings, data and measures."""
    shared = {k: v for k, v in dataclasses.asdict(grid).items()
              if k not in ("batch_sizes", "lrs", "optimizers", "weight_decays", "seeds",
                           "resamples", "max_train_error", "device")}
    text = json.dumps([dict(recipe), shared, bundle.spec], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _current_row(grid: RecipeGrid, bundle, recipe, out: Path) -> dict[str, Any] | None:
    """The run's row if it is measured with the grid's current settings."""
    path = out / "runs" / run_name(recipe) / "row.json"
    try:
        row = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return row if row.get("key") == _key(grid, bundle, recipe) else None


def _run_one(grid: RecipeGrid, bundle, recipe, out: Path, progress: bool, say) -> None:
    """Train (or resume) and measure one recipe, unless it is current or being run."""
    run_dir = out / "runs" / run_name(recipe)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with output_lock(run_dir):
            if _current_row(grid, bundle, recipe, out) is None:
                write_json(run_dir / "row.json", _train_and_measure(grid, bundle, recipe,
                                                                    run_dir, progress))
    except WriteError as exc:
        if "another process" not in str(exc):
            raise
        say(f"  {run_name(recipe)} is being run by another process: left to it")


def _train_and_measure(grid: RecipeGrid, bundle, recipe, run_dir: Path,
                       progress: bool) -> dict[str, Any]:
    import warnings

    config = grid.train_config(recipe, progress)
    model = build_model(grid.model, bundle, seed=recipe["seed"], **grid.model_options)
    resume = (run_dir / "resume.pt").is_file() and _same_config(run_dir, config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small batches and large lrs are the point here
        result = train(model, bundle, config, out_dir=run_dir, resume=resume)
    row = {"name": run_name(recipe), "settings": dict(recipe),
           "key": _key(grid, bundle, recipe), "diverged": result.diverged,
           "train_seconds": result.seconds}
    if result.diverged:
        return {**row, "measures": dict.fromkeys(MEASURES, None), "train_error": None,
                "test_error": None, "generalization_gap": None, "loss_gap": None}
    measured = measure_model(model, bundle, dataclasses.replace(grid.measures,
                                                                 device=grid.device))
    return {**row, **measured,
            "generalization_gap": measured["test_error"] - measured["train_error"],
            "loss_gap": measured["test_loss"] - measured["train_loss"]}


def _same_config(run_dir: Path, config: TrainConfig) -> bool:
    """Whether the interrupted run in ``run_dir`` was started with ``config``."""
    try:
        stored = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return False
    mine = dataclasses.asdict(config)
    return all(stored.get(k) == v for k, v in mine.items() if k not in ("progress", "device"))


def _write_summary(grid: RecipeGrid, bundle, rows: list[dict[str, Any]],
                   out: Path) -> dict[str, Any] | None:
    """``summary.json`` from the rows (under the report lock; another writer: left to it)."""
    try:
        with output_lock(out / "summary.json"):
            summary = summarize(grid, rows)
            summary["setup"] = {"dataset": bundle.name, "train_examples": len(bundle.train[1]),
                                "model": grid.model, "epochs": grid.epochs,
                                "provenance": provenance()}
            summary["files"] = write_report(summary, out)
            write_json(out / "summary.json", summary)
            return summary
    except WriteError as exc:
        if "another process" not in str(exc):
            raise
        return None


def summarize(grid: RecipeGrid, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The rank correlations, optimizer comparisons and findings of measured rows."""
    axes = grid.varying()
    left_out = [r["name"] for r in rows if _left_out(grid, r)]
    kept = [r for r in rows if r["name"] not in left_out]
    table = correlations(kept, MEASURES, axes, resamples=grid.resamples)
    table["loss_gap"] = correlations(
        [{**r, "measures": {"loss_gap": r["loss_gap"]}} for r in kept], ["loss_gap"],
        axes, resamples=grid.resamples)["loss_gap"]
    runs = [{**{k: r[k] for k in ("name", "settings", "measures", "train_error", "test_error",
                                  "generalization_gap", "loss_gap", "train_loss", "test_loss",
                                  "diverged") if k in r},
             **({"left_out": True} if r["name"] in left_out else {})} for r in rows]
    comparisons = optimizer_comparisons(kept, grid.optimizers)
    coarse = coarse_notes(grid.measures)
    words = findings(table, comparisons, len(kept), coarse)
    if left_out:
        words.insert(1, f"{len(left_out)} of {len(rows)} runs ended at a train error of "
                        f"{100 * grid.max_train_error:g}% or more (not minima) and are left "
                        f"out of every tau and comparison: {', '.join(left_out)}.")
    return {"runs": runs, "correlations": table, "axes": axes, "left_out": left_out,
            "comparisons": comparisons, "coarse": coarse,
            "warnings": [f"{name} is coarse (quick measures): {note}"
                         for name, note in coarse.items()],
            "findings": words}


def _left_out(grid: RecipeGrid, row: Mapping[str, Any]) -> bool:
    """Whether a measured row is too far from a minimum to count (``max_train_error``)."""
    error = row.get("train_error")
    return (grid.max_train_error is not None and error is not None
            and error >= grid.max_train_error)


def optimizer_comparisons(rows: list[dict[str, Any]], optimizers) -> list[dict[str, Any]]:
    """Each optimizer against the first (e.g. SAM vs SGD) at the same batch, lr, weight decay
    and seed: median ratios of top eigenvalue and of the other measures, and test error."""
    if len(optimizers) < 2:
        return []
    base = optimizers[0]
    key = lambda s: tuple(s[a] for a in AXES if a != "optimizer")  # noqa: E731
    by = {(r["settings"]["optimizer"], key(r["settings"])): r for r in rows
          if not r.get("diverged")}
    out = []
    for other in optimizers[1:]:
        pairs = [(by[(base, k)], r) for (o, k), r in by.items()
                 if o == other and (base, k) in by]
        if not pairs:
            continue
        flatter = [_sign(r["measures"]["top_eigenvalue"], b["measures"]["top_eigenvalue"])
                   for b, r in pairs]
        lower = [_sign(r["test_error"], b["test_error"]) for b, r in pairs]
        out.append({"optimizer": other, "against": base, "pairs": len(pairs),
                    **{f"{m}_ratio": _median([_ratio(b, r, m) for b, r in pairs])
                       for m in ("top_eigenvalue", "trace", "adaptive_sharpness")},
                    "flatter_top_eigenvalue": flatter.count(1), "flatter_p": sign_test(flatter),
                    "test_error_change": _median([r["test_error"] - b["test_error"]
                                                  for b, r in pairs]),
                    "lower_test_error": lower.count(1), "lower_test_error_p": sign_test(lower)})
    return out


def _sign(value: float | None, base: float | None) -> int:
    """1 where ``value < base``, -1 where above, 0 for a tie or a missing number."""
    if value is None or base is None or not (math.isfinite(value) and math.isfinite(base)):
        return 0
    return int(value < base) - int(value > base)


def sign_test(signs: list[int]) -> float:
    """Two-sided sign test of paired differences (+1/-1; ties, 0, are dropped): the p-value
    of as lopsided a count under a fair coin; nan without any untied pair."""
    from scipy.stats import binomtest

    wins, losses = signs.count(1), signs.count(-1)
    if wins + losses == 0:
        return float("nan")
    return float(binomtest(wins, wins + losses, 0.5).pvalue)


def _ratio(base: dict, other: dict, measure: str) -> float:
    a, b = base["measures"].get(measure), other["measures"].get(measure)
    return float("nan") if a in (None, 0) or b is None else b / a


def _median(values: list[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(finite)) if finite else float("nan")
