"""The small-batch versus large-batch study: train both, then compare them.

``run_study(config, out_dir)`` trains the two runs (and, for the "V versus W" section, the same
network from several seeds) under ``out_dir/runs/<name>/``, then measures, draws and reports
them as ``landscape.workflows.compare`` does (the one path of ``landscape compare``), adding
the checks of the usual claims and the runs' settings. Outputs as ``compare`` lists, plus
``runs/``. Each step records a key of the settings it depends on in ``study_state.json``; a
re-run skips steps whose key and outputs are unchanged. ``StudyResult`` is what it returns.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

from ..checkpoint import trusted_code
from ..errors import LandscapeError
from ..models import build_model
from ..train import TrainConfig, train
from ..util import output_lock
from .config import CompareConfig
from .inputs import Minimum, load_minima, open_run
from .measurements import measure
from .result import StudyResult, finish
from .steps import Clock, Stages, Steps, step_key

LABELS = {"small_batch": "small batch", "large_batch": "large batch"}

__all__ = ["RunSpec", "StudyConfig", "StudyResult", "run_study", "LABELS"]


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """How one of the two models is trained.

    Attributes:
        batch_size: examples per step or ``"full"``.
        lr: learning rate.
        epochs: passes over the training set.
        optimizer: optimizer name (see ``landscape.train.OPTIMIZERS``).
        momentum: momentum (sgd, rmsprop).
        weight_decay: L2 penalty.
    """

    batch_size: int | str
    lr: float
    epochs: int
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class StudyConfig(CompareConfig):
    """Settings of the study: the data, the model and the runs to train, and (inherited from
    ``CompareConfig``) what is measured around the minima. The defaults are the built-in demo
    (MNIST-1D, 8k-parameter CNN, batch 32 for 60 epochs versus full batch for 600 epochs, SGD
    with momentum 0.9): both runs fit the training set, the epoch budgets differ so that each
    converges.

    Attributes:
        dataset, data_root, train_subset, test_subset, data_seed: the data (load_dataset).
        model, model_options: the architecture (build_model), the same for every run.
        seed: initialization seed (shared by both runs), shuffling seed and direction seed.
        small, large: the two training runs.
        track_points: measurements of the top Hessian eigenvalue during each of the two runs
            (warm-started Lanczos; 0: none). Each costs about ten full-batch training steps
            of the demo (a gradient graph and at least four products on all 4,000
            examples): six per run add about 5 s to the demo's 40 s of training.
        v_versus_w: run the "V versus W" section: the same network trained from ``seeds``
            (k >= 3) with ``seeds_run``; the plane through the first three minima and the
            curve between the first two (``CompareConfig``'s ``w_plane_*`` and ``curve_*``).
        The rest: see ``CompareConfig``.
    """

    dataset: str = "mnist1d"
    data_root: str | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    data_seed: int = 0
    model: str = "cnn1d"
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    small: RunSpec = RunSpec(batch_size=32, lr=0.01, epochs=60)
    large: RunSpec = RunSpec(batch_size="full", lr=0.1, epochs=600)
    track_points: int = 6
    v_versus_w: bool = True
    seeds: tuple[int, ...] = (1, 2, 3)
    seeds_run: RunSpec = RunSpec(batch_size=128, lr=0.05, epochs=30)

    QUICK = {**CompareConfig.QUICK, "train_subset": 2000,
             "small": RunSpec(batch_size=32, lr=0.02, epochs=40),
             "seeds_run": RunSpec(batch_size=128, lr=0.05, epochs=20)}
    """``quick()``: the same recipes on half the training set (2,000 examples; the test set
    whole), the small batch at lr 0.02 for 40 epochs (on half the data it converges in fewer
    steps), the V-versus-W seeds for 20 epochs; coarse grids and fewer products. The large
    batch is still the full (training) batch at lr 0.1 for 600 epochs."""

    def runs(self) -> dict[str, RunSpec]:
        """Name -> training settings of the two compared runs."""
        return {"small_batch": self.small, "large_batch": self.large}


def run_study(config: StudyConfig = StudyConfig(), out_dir: str | Path = "study", *,
              force: bool = False, progress: bool = True,
              log: Callable[[str], None] | None = print) -> StudyResult:
    """Train a small- and a large-batch model and compare their minima.

    Args:
        config: the settings (``StudyConfig()`` is the built-in demo,
            ``StudyConfig.quick()`` a smoke run).
        out_dir: folder for every output (the runs under ``runs/``); steps already done
            there are reused.
        force, progress, log: as for ``landscape.workflows.compare``.

    Returns:
        StudyResult (``summary`` as ``compare``'s, with ``study``, the two runs' settings,
        and ``checks``, the usual claims checked).
    """
    start = time.perf_counter()
    if config.v_versus_w and (len(config.seeds) < 3
                              or len(set(config.seeds)) != len(config.seeds)):
        raise LandscapeError(f"V versus W needs at least three different seeds, got "
                             f"{list(config.seeds)}")
    out, _, steps, bundle = open_run(config, out_dir, force, log)
    with output_lock(out):  # a second writer of this folder is refused at once
        say, clock = Stages(log, 6 + config.v_versus_w), Clock()
        seeds = list(config.seeds) if config.v_versus_w else []
        say.step("training the small- and the large-batch model"
                 + (f" and the same network from {len(seeds)} seeds" if seeds else ""))
        with clock("train"):
            for name, run in config.runs().items():
                _train_run(config, bundle, out, steps, progress, say, name, run, config.seed,
                           track=True)
            for seed in seeds:
                _train_run(config, bundle, out, steps, progress, say, f"seed_{seed}",
                           config.seeds_run, seed)
        minima = _minima(config, out, list(config.runs()), [LABELS[k] for k in config.runs()])
        seed_minima = (_minima(config, out, [f"seed_{s}" for s in seeds],
                               [f"seed {s}" for s in seeds]) if seeds else None)
        measured = config if seeds else dataclasses.replace(config, curve_epochs=0)
        summary, figures, scenes = measure(measured, bundle, minima, out, steps, clock, say,
                                           progress, vw_minima=seed_minima)
        summary["study"] = {name: dataclasses.asdict(run) for name, run in config.runs().items()}
        summary["checks"] = _checks(summary["models"])
        if seed_minima:
            summary["v_versus_w"].update(
                seeds=seeds, seeds_run=dataclasses.asdict(config.seeds_run),
                seed_runs={m.label: {"train_loss": m.final["train_loss"],
                                     "train_accuracy": m.final["train_acc"],
                                     "test_accuracy": m.final["test_acc"]} for m in seed_minima})
        return finish(summary, figures, scenes, out, steps, clock, start)


def _train_run(config: StudyConfig, bundle, out: Path, steps: Steps, progress: bool,
               say: Callable[[str], None], name: str, run: RunSpec, seed: int,
               track: bool = False) -> None:
    """Train one run into ``out/runs/<name>`` unless it is there, with the top Hessian
    eigenvalue tracked ``config.track_points`` times if ``track``."""

    run_dir = out / "runs" / name
    every = max(1, run.epochs // config.track_points) if track and config.track_points else 0
    key = step_key(dataclasses.asdict(run), bundle.spec, config.model, config.model_options,
                   seed, config.device, every)
    if steps.reuse(f"train_{name}", key, [run_dir / "model.pt"], lambda: None)[0]:
        return
    model = build_model(config.model, bundle, seed=seed, **config.model_options)
    tc = TrainConfig(optimizer=run.optimizer, lr=run.lr, momentum=run.momentum,
                     weight_decay=run.weight_decay, batch_size=run.batch_size,
                     epochs=run.epochs, seed=seed, device=config.device,
                     eval_every=max(1, run.epochs // 100), progress=progress,
                     track_eigenvalues=every)
    result = train(model, bundle, tc, out_dir=run_dir)
    label = LABELS.get(name, name.replace("_", " "))
    if result.diverged:
        raise LandscapeError(f"{label} run: {result.message}")
    steps.mark(f"train_{name}", key, [run_dir / "model.pt"])
    say(f"    {label}: test acc {result.final['test_acc']:.3f} ({result.seconds:.0f} s)")


def _minima(config: StudyConfig, out: Path, names: list[str], labels: list[str]
            ) -> list[Minimum]:
    """The trained runs as ``compare`` loads them (the study names the model's code itself,
    so a ``module:function`` model is rebuilt without asking for trust)."""
    with trusted_code(False, config.model):
        return load_minima([out / "runs" / name / "model.pt" for name in names], labels)[0]


def _checks(models: dict[str, dict[str, Any]]) -> dict[str, bool]:
    """The usual claims, checked: the large batch finds a sharper minimum (every measure)
    that generalizes worse."""
    sb, lb = models["small_batch"], models["large_batch"]
    return {
        "small_batch_tests_better": sb["test_accuracy"] > lb["test_accuracy"],
        "large_batch_sharper_top_eigenvalue": lb["top_eigenvalue"] > sb["top_eigenvalue"],
        "large_batch_larger_trace": lb["trace"] > sb["trace"],
        "large_batch_higher_sharpness": lb["sharpness"] > sb["sharpness"],
        "large_batch_narrower_basin_1d": (sb["basin_width_1d"] is not None
                                          and lb["basin_width_1d"] is not None
                                          and lb["basin_width_1d"] < sb["basin_width_1d"]),
    }
