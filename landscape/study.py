"""The small-batch versus large-batch study: train both, measure, draw, report.

``run_study(config, out_dir)`` runs every step of the pipeline and writes, under ``out_dir``:
``runs/<label>/`` (training runs), ``surfaces/*.h5`` (interpolation, 1-D and 2-D surfaces),
``directions/*.h5``, ``curvature/<label>.json``, ``sharpness/<label>.json``, ``figures/*.png``,
``summary.json``, ``report.md`` and ``report.html``. Each step records a key of the settings it
depends on in ``study_state.json``; a re-run skips steps whose key and outputs are unchanged.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ._util import pick_device, provenance, write_json
from .checkpoint import load_checkpoint
from .connect import ConnectOptions, connect, path_summary
from .data import load_dataset
from .directions import (hessian_directions, interpolation_direction, plane_directions,
                         random_directions, save_directions)
from .errors import LandscapeError
from .hessian import (SPECTRUM_FORMAT_VERSION, HessianOptions, common_densities,
                      directional_curvature, hessian_density, hessian_eigenvalues, hessian_trace,
                      spectrum_record)
from .models import build_model, count_parameters
from .params import flatten
from .shape import surface_shape
from .sharpness import measure_sharpness
from .store import load_surface, save_surface
from .surface import SurfaceOptions, compute_surface
from .train import TrainConfig, load_history, stability_threshold, train

LABELS = {"small_batch": "small batch", "large_batch": "large batch"}


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


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """Settings of the study. The defaults are the built-in demo (MNIST-1D, 8k-parameter CNN,
    batch 32 for 60 epochs versus full batch for 600 epochs, SGD with momentum 0.9): both runs
    fit the training set, the epoch budgets differ so that each converges.

    Attributes:
        dataset, data_root, train_subset, test_subset, data_seed: the data (load_dataset).
        model, model_options: the architecture (build_model), the same for both runs.
        seed: initialization seed (shared by both runs), shuffling seed and direction seed.
        small, large: the two training runs.
        line_points, line_range: 1-D filter-normalized surfaces.
        plane_points, plane_range: 2-D filter-normalized surfaces (square grid, training
            loss and accuracy only: the figures and basin shapes use the training loss). The
            default half-width 0.5 holds the basins of the MNIST-1D CNN (its loss passes 10
            near 0.6); 25 points per side resolve them (step 0.042, a fifth of their width).
        interp_points, interp_range: interpolation from the small- to the large-batch model.
        top_k: Hessian eigenvalues per model.
        trace_products: Hessian-vector products for the trace (Hutch++).
        density_probes, density_steps: stochastic Lanczos quadrature.
        eps: Keskar sharpness box sizes.
        rho: adaptive sharpness radius (l2).
        sharpness_samples: draws for average-case adaptive sharpness.
        rise: loss increase that bounds a basin (basin width).
        track_points: measurements of the top Hessian eigenvalue during each training run
            (warm-started Lanczos; 0: none). Each costs about ten full-batch training steps
            of the demo (a gradient graph and at least four products on all 4,000
            examples): six per run add about 5 s to the demo's 40 s of training.
        eigen_points, eigen_range: 1-D slices along each model's top Hessian eigenvector
            (unit norm; 0 points: none).
        render_3d: draw the 3-D figure (pyvista, offscreen).
        device: torch device (None: best available).
        v_versus_w: run the "V versus W" section: the same network trained from ``seeds``
            (k >= 3) with ``seeds_run``, the plane through the first three minima
            (``w_plane_points`` per side, ``w_plane_margin`` beyond them), and the straight
            line against a trained Bezier curve (``curve_epochs``, ``curve_points``) between
            the first two.
    """

    dataset: str = "mnist1d"
    data_root: str | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    data_seed: int = 0
    model: str = "cnn1d"
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    seed: int = 0
    small: RunSpec = RunSpec(batch_size=32, lr=0.01, epochs=60)
    large: RunSpec = RunSpec(batch_size="full", lr=0.1, epochs=600)
    line_points: int = 51
    line_range: tuple[float, float] = (-0.5, 0.5)
    plane_points: int = 25
    plane_range: tuple[float, float] = (-0.5, 0.5)
    interp_points: int = 61
    interp_range: tuple[float, float] = (-1.0, 2.0)
    top_k: int = 5
    trace_products: int = 60
    density_probes: int = 2
    density_steps: int = 60
    eps: tuple[float, ...] = (1e-3, 5e-4)
    rho: float = 0.05
    sharpness_samples: int = 10
    rise: float = 0.1
    track_points: int = 6
    eigen_points: int = 41
    eigen_range: tuple[float, float] = (-0.3, 0.3)
    render_3d: bool = True
    device: str | None = None
    v_versus_w: bool = True
    seeds: tuple[int, ...] = (1, 2, 3)
    seeds_run: RunSpec = RunSpec(batch_size=128, lr=0.05, epochs=30)
    w_plane_points: int = 17
    w_plane_margin: float = 0.35
    curve_epochs: int = 30
    curve_points: int = 21

    @classmethod
    def quick(cls, **overrides: Any) -> "StudyConfig":
        """The same two models with coarse grids and fewer products: a smoke run (the
        V-versus-W seeds train for 20 epochs instead of 30)."""
        settings: dict[str, Any] = dict(line_points=21, plane_points=13, interp_points=25,
                                        eigen_points=21,
                                        top_k=3, trace_products=30, density_probes=1,
                                        density_steps=40, eps=(1e-3,), sharpness_samples=3,
                                        w_plane_points=11, curve_points=11, curve_epochs=10,
                                        seeds_run=RunSpec(batch_size=128, lr=0.05, epochs=20))
        settings.update(overrides)
        return cls(**settings)

    def runs(self) -> dict[str, RunSpec]:
        """Label -> training settings."""
        return {"small_batch": self.small, "large_batch": self.large}


@dataclasses.dataclass(frozen=True)
class StudyResult:
    """What ``run_study`` produced.

    Attributes:
        summary: the content of ``summary.json``.
        out_dir: the study folder.
        files: name -> path of the main outputs (report, summary, figures).
        reused: steps skipped because their outputs were up to date.
        seconds: wall time.
    """

    summary: dict[str, Any]
    out_dir: Path
    files: dict[str, Path]
    reused: tuple[str, ...]
    seconds: float


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


def _open(config, out_dir, force: bool, log: Callable[[str], None] | None):
    """Start a study or sweep: its folder, logger, step record and data."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out, log or (lambda _msg: None), _Steps(out, force), load_setup(config)


class _Steps:
    """Which steps are done, by a key of their settings, kept in ``study_state.json``."""

    def __init__(self, out: Path, force: bool):
        self.path = out / "study_state.json"
        self.force = force
        self.state: dict[str, str] = {}
        if self.path.is_file() and not force:
            try:
                self.state = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self.state = {}
        self.reused: list[str] = []

    def current(self, name: str, key: str, outputs: list[Path]) -> bool:
        fresh = (not self.force and self.state.get(name) == key
                 and all(p.exists() for p in outputs))
        if fresh:
            self.reused.append(name)
        return fresh

    def mark(self, name: str, key: str) -> None:
        self.state[name] = key
        write_json(self.path, self.state)


class _Clock:
    """Wall seconds per step (``summary["step_seconds"]``), to see where the time goes."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str):
        import contextlib

        @contextlib.contextmanager
        def timed():
            t0 = time.perf_counter()
            try:
                yield
            finally:
                self.seconds[name] = round(time.perf_counter() - t0, 2)
        return timed()


def _key(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_study(config: StudyConfig = StudyConfig(), out_dir: str | Path = "study", *,
              force: bool = False, progress: bool = True,
              log: Callable[[str], None] | None = print) -> StudyResult:
    """Train a small- and a large-batch model and compare their minima.

    Args:
        config: the settings (``StudyConfig()`` is the built-in demo,
            ``StudyConfig.quick()`` a smoke run).
        out_dir: folder for every output; steps already done there are reused.
        force: recompute every step.
        progress: show progress bars of the long steps.
        log: called with one line per step (None: silent).

    Returns:
        StudyResult with the summary and the paths written.
    """
    start = time.perf_counter()
    out, say, steps, bundle = _open(config, out_dir, force, log)
    total = 8 if config.v_versus_w else 7
    clock = _Clock()
    say(f"[1/{total}] training the small- and the large-batch model")
    with clock("train"):
        models, histories, train_keys = _train_both(config, bundle, out, steps, progress, say)
    say(f"[2/{total}] interpolating from the small- to the large-batch model")
    with clock("interpolation"):
        interp = _interpolation(config, bundle, models, out, steps, train_keys, progress)
    say(f"[3/{total}] 1-D and 2-D filter-normalized surfaces")
    with clock("surfaces"):
        surfaces = _surfaces(config, bundle, models, out, steps, train_keys, progress)
    say(f"[4/{total}] Hessian eigenvalues, trace and spectral density")
    with clock("curvature"):
        curvature = _curvature(config, bundle, models, out, steps, train_keys, progress)
    say(f"[5/{total}] sharpness and slices along the top Hessian eigenvector")
    with clock("sharpness"):
        sharp = _sharpness(config, bundle, models, out, steps, train_keys, progress)
    with clock("eigen_slices"):
        eigen = _eigen_slices(config, bundle, models, out, steps, train_keys, progress)
    vw = None
    if config.v_versus_w:
        say(f"[6/{total}] V versus W: {len(config.seeds)} seeds, the plane through three "
            "minima, the line and a curve between two")
        with clock("v_versus_w"):
            vw = _v_versus_w(config, bundle, out, steps, progress, say)
    say(f"[{total - 1}/{total}] basin shapes and summary")
    shapes = _shapes(config, surfaces)
    summary = _summary(config, bundle, models, histories, curvature, sharp, shapes, interp,
                       surfaces)
    summary["eigen_slices"] = {k: v["check"] for k, v in eigen.items()}
    if vw is not None:
        summary["v_versus_w"] = _vw_summary(config, vw, shapes)
    say(f"[{total}/{total}] figures and report")
    with clock("figures"):
        figures = _figures(config, interp, surfaces, curvature, histories, out, say, eigen)
        if vw is not None:
            figures.update(_vw_figures(config, vw, surfaces, out, say))
        scenes = _scenes(config, surfaces, out, say)
    summary["figures"] = {k: str(p.relative_to(out)) for k, p in figures.items()}
    summary["scenes"] = {k: str(p.relative_to(out)) for k, p in scenes.items()}
    summary["step_seconds"] = clock.seconds
    summary["seconds"] = time.perf_counter() - start
    summary["reused_steps"] = list(steps.reused)
    from .report import write_report

    files = write_report(summary, out)
    files.update({f"figure_{k}": p for k, p in figures.items()})
    files.update({f"scene_{k}": p for k, p in scenes.items()})
    return StudyResult(summary=summary, out_dir=out, files=files, reused=tuple(steps.reused),
                       seconds=summary["seconds"])


# ----------------------------------------------------------------------------- steps

def _train_both(config: StudyConfig, bundle, out: Path, steps: _Steps, progress: bool,
                say: Callable[[str], None]):
    models, histories, keys = {}, {}, {}
    for label, run in config.runs().items():
        models[label], histories[label], keys[label] = _train_run(
            config, bundle, out, steps, progress, say, label, run, config.seed, track=True)
    return models, histories, keys


def _train_run(config, bundle, out: Path, steps: _Steps, progress: bool,
               say: Callable[[str], None], label: str, run: RunSpec, seed: int,
               track: bool = False):
    """Train one run into ``out/runs/<label>`` (or reuse it), with the top Hessian eigenvalue
    tracked ``config.track_points`` times if ``track``; returns model, history, key."""

    run_dir = out / "runs" / label
    every = max(1, run.epochs // config.track_points) if track and config.track_points else 0
    key = _key(dataclasses.asdict(run), bundle.spec, config.model, config.model_options,
               seed, config.device, every)
    if not steps.current(f"train_{label}", key, [run_dir / "model.pt"]):
        model = build_model(config.model, bundle, seed=seed, **config.model_options)
        tc = TrainConfig(optimizer=run.optimizer, lr=run.lr, momentum=run.momentum,
                         weight_decay=run.weight_decay, batch_size=run.batch_size,
                         epochs=run.epochs, seed=seed, device=config.device,
                         eval_every=max(1, run.epochs // 100), progress=progress,
                         track_eigenvalues=every)
        result = train(model, bundle, tc, out_dir=run_dir)
        name = LABELS.get(label, label)
        if result.diverged:
            raise LandscapeError(f"{name} run: {result.message}")
        steps.mark(f"train_{label}", key)
        say(f"    {name}: test acc {result.final['test_acc']:.3f} ({result.seconds:.0f} s)")
    model, _ = load_checkpoint(run_dir / "model.pt", builder=config.model)
    return model, load_history(run_dir), key


def _interpolation(config: StudyConfig, bundle, models, out: Path, steps: _Steps,
                   train_keys: dict[str, str], progress: bool):

    path = out / "surfaces" / "interpolation.h5"
    key = _key(train_keys, config.interp_range, config.interp_points)
    if steps.current("interpolation", key, [path]):
        return load_surface(path)
    direction = interpolation_direction(models["small_batch"], models["large_batch"])
    alpha = np.linspace(*config.interp_range, config.interp_points)
    anchors = {"coords": np.array([[0.0], [1.0]]),
               "labels": np.array([LABELS["small_batch"], LABELS["large_batch"]])}
    surface = compute_surface(models["small_batch"], bundle, [direction], x=alpha,
                              options=SurfaceOptions(metrics=_METRICS, progress=progress,
                                                     device=config.device),
                              out=path, force=True, anchors=anchors,
                              provenance=provenance(step="interpolation"))
    steps.mark("interpolation", key)
    return surface


_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")


def _surfaces(config: StudyConfig, bundle, models, out: Path, steps: _Steps,
              train_keys: dict[str, str], progress: bool):
    """1-D and 2-D surfaces around each model: the same direction seed for both, each
    direction filter-normalized to its own model's weights."""

    result: dict[str, dict[str, Any]] = {}
    line = np.linspace(*config.line_range, config.line_points)
    plane = np.linspace(*config.plane_range, config.plane_points)
    for label, model in models.items():
        dpath = out / "directions" / f"{label}.h5"
        paths = {"1d": out / "surfaces" / f"{label}_1d.h5",
                 "2d": out / "surfaces" / f"{label}_2d.h5"}
        key = _key(train_keys[label], config.seed, config.line_range, config.line_points,
                   config.plane_range, config.plane_points)
        if steps.current(f"surfaces_{label}", key, [dpath, *paths.values()]):
            result[label] = {k: load_surface(p) for k, p in paths.items()}
            continue
        dirs = random_directions(model, count=2, norm="filter", ignore="biasbn",
                                 seed=config.seed)
        save_directions(dpath, dirs, provenance(step=f"directions {label}", seed=config.seed),
                        overwrite=True)
        options = SurfaceOptions(metrics=_METRICS, progress=progress, device=config.device,
                                 seed=config.seed)
        result[label] = {
            "1d": compute_surface(model, bundle, dpath, x=line, out=paths["1d"], force=True,
                                  options=options,
                                  provenance=provenance(step=f"1-D surface {label}")),
            # The planes' test metrics were never drawn or summarized: a fifth of their cost.
            "2d": compute_surface(model, bundle, dpath, x=plane, y=plane, out=paths["2d"],
                                  force=True,
                                  options=dataclasses.replace(options, metrics=_METRICS[:2]),
                                  provenance=provenance(step=f"2-D surface {label}")),
        }
        steps.mark(f"surfaces_{label}", key)
    return result


def _curvature(config: StudyConfig, bundle, models, out: Path, steps: _Steps,
               train_keys: dict[str, str], progress: bool) -> dict[str, dict[str, Any]]:

    def measure(model) -> dict[str, Any]:
        common = dict(seed=config.seed,
                      options=HessianOptions(device=config.device, progress=progress))
        # The bottom end's default tolerance (1e-5 of the spectrum's width) brackets the
        # smallest eigenvalue tightly enough to tell a negative one from zero.
        eig = hessian_eigenvalues(model, bundle.train, k=config.top_k, which="both",
                                  k_smallest=1, **common)
        trace = hessian_trace(model, bundle.train, n_products=config.trace_products, **common)
        density = hessian_density(model, bundle.train, n_probes=config.density_probes,
                                  n_steps=config.density_steps, **common)
        return spectrum_record(eigen=eig, n_bottom=1, trace=trace, density=density,
                               split="train", mode=eig.mode)

    settings = (config.top_k, config.trace_products, config.density_probes,
                config.density_steps, config.seed, SPECTRUM_FORMAT_VERSION)
    return _per_model_json("curvature", models, out, steps, train_keys, settings, measure)


EIGEN_STEP = 1e-6
"""Step of the eigen-slice curvature check: longer steps cross ReLU kinks (see
``landscape.hessian.directional_curvature``)."""


def _eigen_slices(config: StudyConfig, bundle, models, out: Path, steps: _Steps,
                  train_keys: dict[str, str], progress: bool) -> dict[str, dict[str, Any]]:
    """Per model: a 1-D surface along its own top Hessian eigenvector (unit norm), and the
    check that the loss's second difference there (float64, h = ``EIGEN_STEP``) is the
    eigenvalue."""

    if not config.eigen_points:
        return {}
    result: dict[str, dict[str, Any]] = {}
    line = np.linspace(*config.eigen_range, config.eigen_points)
    for label, model in models.items():
        dpath = out / "directions" / f"{label}_hessian.h5"
        paths = {"surface": out / "surfaces" / f"{label}_eigen_1d.h5",
                 "check": out / "curvature" / f"{label}_eigen_slice.json"}
        key = _key(train_keys[label], config.seed, config.eigen_range, config.eigen_points,
                   EIGEN_STEP)
        if steps.current(f"eigen_{label}", key, [dpath, *paths.values()]):
            result[label] = {"surface": load_surface(paths["surface"]),
                             "check": json.loads(paths["check"].read_text())}
            continue
        found = hessian_directions(model, bundle, count=1, seed=config.seed,
                                   device=config.device)
        save_directions(dpath, found.directions, provenance(step=f"eigenvector {label}",
                                                            **found.recipe()), overwrite=True)
        second = directional_curvature(model, bundle.train, flatten(found.directions[0]),
                                       step=EIGEN_STEP, device=config.device)
        value = float(found.eigenvalues[0])
        check = {"eigenvalue": value, "residual": float(found.residuals[0]),
                 "second_difference": second, "step": EIGEN_STEP,
                 "relative_error": abs(second - value) / abs(value)}
        write_json(paths["check"], check)
        surface = compute_surface(
            model, bundle, dpath, x=line, out=paths["surface"], force=True,
            options=SurfaceOptions(metrics=_METRICS, progress=progress, device=config.device,
                                   seed=config.seed),
            provenance=provenance(step=f"eigenvector slice {label}", **found.recipe()))
        result[label] = {"surface": surface, "check": check}
        steps.mark(f"eigen_{label}", key)
    return result


def _sharpness(config: StudyConfig, bundle, models, out: Path, steps: _Steps,
               train_keys: dict[str, str], progress: bool) -> dict[str, dict[str, Any]]:

    def measure(model) -> dict[str, Any]:
        return measure_sharpness(model, bundle, eps=config.eps, rho=config.rho,
                                 samples=config.sharpness_samples, seed=config.seed,
                                 progress=progress).to_dict()

    settings = (config.eps, config.rho, config.sharpness_samples, config.seed)
    return _per_model_json("sharpness", models, out, steps, train_keys, settings, measure)


def _per_model_json(step: str, models, out: Path, steps: _Steps, train_keys: dict[str, str],
                    settings: tuple, measure: Callable[[Any], dict[str, Any]]
                    ) -> dict[str, dict[str, Any]]:
    """Run ``measure(model)`` for each model, or reuse ``out/<step>/<label>.json`` when the
    model and ``settings`` are unchanged."""
    result = {}
    for label, model in models.items():
        path = out / step / f"{label}.json"
        key = _key(train_keys[label], *settings)
        if steps.current(f"{step}_{label}", key, [path]):
            result[label] = json.loads(path.read_text())
            continue
        result[label] = measure(model)
        write_json(path, result[label])
        steps.mark(f"{step}_{label}", key)
    return result


def _v_versus_w(config: StudyConfig, bundle, out: Path, steps: _Steps, progress: bool,
                say: Callable[[str], None]) -> dict[str, Any]:
    """Many minima of one network: ``config.seeds`` runs of ``config.seeds_run``, the plane
    through the first three minima, and the straight line against a trained Bezier curve
    between the first two."""
    if len(config.seeds) < 3 or len(set(config.seeds)) != len(config.seeds):
        raise LandscapeError(f"V versus W needs at least three different seeds, got "
                             f"{list(config.seeds)}")
    minima, keys, finals = {}, {}, {}
    for seed in config.seeds:
        label = f"seed_{seed}"
        minima[label], history, keys[label] = _train_run(
            config, bundle, out, steps, progress, say, label, config.seeds_run, seed)
        finals[label] = history["epochs"][-1]
    labels = list(minima)
    names = [label.replace("_", " ") for label in labels]
    plane = _w_plane(config, bundle, [minima[k] for k in labels[:3]], names[:3],
                     [keys[k] for k in labels[:3]], out, steps, progress)
    curve, line = _w_curve(config, bundle, [minima[k] for k in labels[:2]], names[:2],
                           [keys[k] for k in labels[:2]], out, steps, progress)
    return {"names": names, "finals": finals, "plane": plane, "curve": curve, "line": line}


def _w_plane(config: StudyConfig, bundle, models, names, keys, out: Path, steps: _Steps,
             progress: bool):

    path = out / "surfaces" / "w_plane.h5"
    key = _key(keys, config.w_plane_points, config.w_plane_margin)
    if steps.current("w_plane", key, [path]):
        return load_surface(path)
    # Orthogonal axes of equal length: distances on the figure are true distances.
    dirs, coords = plane_directions(*models, orthogonal=True)
    m, n = config.w_plane_margin, config.w_plane_points
    x = np.linspace(coords[:, 0].min() - m, coords[:, 0].max() + m, n)
    y = np.linspace(coords[:, 1].min() - m, coords[:, 1].max() + m, n)
    surface = compute_surface(
        models[0], bundle, dirs, x=x, y=y, out=path, force=True,
        options=SurfaceOptions(metrics=_METRICS, progress=progress, device=config.device),
        anchors={"coords": coords, "labels": np.array(names)},
        provenance=provenance(step="plane through three minima", type="plane",
                              axis_labels=[f"{names[1]} - {names[0]}",
                                           f"{names[2]} - {names[0]} (orthogonal part)"]))
    steps.mark("w_plane", key)
    return surface


def _w_curve(config: StudyConfig, bundle, models, names, keys, out: Path, steps: _Steps,
             progress: bool):

    paths = [out / "surfaces" / "w_curve.h5", out / "surfaces" / "w_line.h5"]
    key = _key(keys, config.curve_epochs, config.curve_points, config.seed, config.device)
    if steps.current("w_curve", key, paths):
        return load_surface(paths[0]), load_surface(paths[1])
    state = out / "curves" / f"bezier_{key}.state.pt"
    for stale in state.parent.glob("*.state.pt"):  # states of other settings cannot resume
        if stale != state:
            stale.unlink()
    options = ConnectOptions(epochs=config.curve_epochs, points=config.curve_points,
                             seed=config.seed, device=config.device)
    result = connect(*models, bundle, options=options, state_path=state, resume=True,
                     progress=progress, names=tuple(names))
    save_surface(paths[0], result.curve)
    save_surface(paths[1], result.line)
    steps.mark("w_curve", key)
    return result.curve, result.line


def _shapes(config: StudyConfig, surfaces) -> dict[str, dict[str, Any]]:

    return {label: {dim: surface_shape(s, metric="train_loss", rise=config.rise).to_dict()
                    for dim, s in by_dim.items()}
            for label, by_dim in surfaces.items()}


# ----------------------------------------------------------------------------- summary

def _finite(value: Any) -> Any:
    """JSON-safe: NaN and inf become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _summary(config, bundle, models, histories, curvature, sharp, shapes, interp, surfaces
             ) -> dict[str, Any]:

    eig = {label: record["eigenvalues"] for label, record in curvature.items()}
    runs = {}
    for label, model in models.items():
        final = histories[label]["epochs"][-1]
        spec = config.runs()[label]
        first_eps = sharp[label]["epsilon"][0]
        adaptive = sharp[label]["adaptive"][0] if sharp[label]["adaptive"] else None
        shape2d, shape1d = shapes[label]["2d"], shapes[label]["1d"]
        runs[label] = {
            "batch_size": (len(bundle.train[1]) if spec.batch_size == "full"
                           else int(spec.batch_size)),
            "full_batch": spec.batch_size == "full",
            "lr": spec.lr, "epochs": spec.epochs, "optimizer": spec.optimizer,
            "steps": final["step"],
            "train_loss": final["train_loss"], "train_accuracy": final["train_acc"],
            "test_loss": final["test_loss"], "test_accuracy": final["test_acc"],
            "generalization_gap": final["train_acc"] - final["test_acc"],
            "train_seconds": histories[label]["status"]["seconds"],
            "top_eigenvalue": max(eig[label]["top"]),
            "top_eigenvalues": sorted(eig[label]["top"], reverse=True),
            "bottom_eigenvalue": eig[label]["bottom"][0],
            "eigen_residuals": eig[label]["residuals"],
            "trace": curvature[label]["trace"]["estimate"],
            "trace_stderr": curvature[label]["trace"]["stderr"],
            "sharpness": first_eps["value"],
            "sharpness_eps": first_eps["eps"],
            "sharpness_all": {f"eps={e['eps']:g}": e["value"] for e in sharp[label]["epsilon"]},
            "adaptive_sharpness": adaptive["value"] if adaptive else None,
            "average_sharpness": (sharp[label]["average"] or {}).get("mean"),
            "basin_label_1d": shape1d["label"], "basin_label_2d": shape2d["label"],
            "basins_2d": shape2d["n_basins"],
            "basin_width_1d": _finite(shape1d["width"]),
            "basin_width_2d": _finite(shape2d["width"]),
            "curvature_1d": shape1d["curvature"][0],
            "surface_min_train_loss": _finite(surfaces[label]["2d"].summary("train_loss")["min"]),
        }
    sb, lb = runs["small_batch"], runs["large_batch"]
    checks = {
        "small_batch_tests_better": sb["test_accuracy"] > lb["test_accuracy"],
        "large_batch_sharper_top_eigenvalue": lb["top_eigenvalue"] > sb["top_eigenvalue"],
        "large_batch_larger_trace": lb["trace"] > sb["trace"],
        "large_batch_higher_sharpness": lb["sharpness"] > sb["sharpness"],
        "large_batch_narrower_basin_1d": (sb["basin_width_1d"] is not None
                                          and lb["basin_width_1d"] is not None
                                          and lb["basin_width_1d"] < sb["basin_width_1d"]),
    }
    interp_summary = {
        "alpha": interp.x.tolist(),
        "train_loss": [_finite(float(v)) for v in interp.metrics["train_loss"]],
        "test_loss": [_finite(float(v)) for v in interp.metrics["test_loss"]],
        "barrier": _barrier(interp),
    }
    return {
        "small_batch": sb, "large_batch": lb,
        "ratios": {"top_eigenvalue": lb["top_eigenvalue"] / sb["top_eigenvalue"],
                   "trace": lb["trace"] / sb["trace"] if sb["trace"] else None,
                   "sharpness": (lb["sharpness"] / sb["sharpness"]) if sb["sharpness"] else None},
        "checks": checks,
        "interpolation": interp_summary,
        "setup": {"dataset": bundle.name, "train_examples": len(bundle.train[1]),
                  "test_examples": len(bundle.test[1]), "model": config.model,
                  "model_options": config.model_options,
                  "parameters": count_parameters(models["small_batch"]), "seed": config.seed,
                  "hessian_mode": curvature["small_batch"]["eigenvalues"]["mode"],
                  "config": _config_dict(config)},
        "provenance": provenance(),
    }


def _vw_summary(config: StudyConfig, vw: dict[str, Any], shapes) -> dict[str, Any]:
    """``summary["v_versus_w"]``: basin counts, barrier heights and the curve's maximum."""

    def shape_of(surface) -> dict[str, Any]:
        shape = surface_shape(surface, metric="train_loss", rise=config.rise)
        return {"label": shape.label, "basins": shape.n_basins, "rule": shape.rule,
                "minima": [{"at": list(at), "train_loss": v} for at, v, _ in shape.minima],
                "barriers": [{"at": list(at), "saddle": saddle,
                              "height": saddle - next(v for a, v, _ in shape.minima if a == at)}
                             for at, saddle in shape.barriers]}

    paths = path_summary(vw["curve"], vw["line"])
    v2d = shapes["small_batch"]["2d"]
    return {
        "seeds": list(config.seeds),
        "seeds_run": dataclasses.asdict(config.seeds_run),
        "seed_runs": {name: {"train_loss": f["train_loss"], "train_accuracy": f["train_acc"],
                             "test_accuracy": f["test_acc"]}
                      for name, f in zip(vw["names"], vw["finals"].values())},
        "v": {"surface": "surfaces/small_batch_2d.h5", "label": v2d["label"],
              "basins": v2d["n_basins"], "rule": v2d.get("rule", "")},
        "w_plane": {"surface": "surfaces/w_plane.h5", "through": vw["names"][:3],
                    **shape_of(vw["plane"])},
        "line": {"surface": "surfaces/w_line.h5", "between": vw["names"][:2],
                 **shape_of(vw["line"]), **paths["line"]},
        "curve": {"surface": "surfaces/w_curve.h5", "kind": "bezier",
                  "epochs": config.curve_epochs, **shape_of(vw["curve"]), **paths["curve"]},
        "curve_max_train_loss": paths["curve"]["max_train_loss"],
        "line_max_train_loss": paths["line"]["max_train_loss"],
    }


def _barrier(interp) -> float | None:
    """Highest train loss between the two models (alpha in [0, 1]) above the higher end."""
    x, loss = interp.x, interp.metrics["train_loss"]
    inside = (x >= 0) & (x <= 1)
    if not inside.any():
        return None
    ends = max(float(np.interp(0.0, x, loss)), float(np.interp(1.0, x, loss)))
    return _finite(float(np.nanmax(loss[inside])) - ends)


def _config_dict(config: StudyConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


# ----------------------------------------------------------------------------- figures

def _figures(config, interp, surfaces, curvature, histories, out: Path,
             say: Callable[[str], None], eigen=None) -> dict[str, Path]:
    """The study's figures. Where minima are compared, a linear loss axis capped near the
    minima (``plot2d.loss_cap``) with each basin's width at ``config.rise`` marked, so that a
    glance ranks them as the measured widths do; one kernel width for both spectra."""
    from .plot2d import (plot_contours, plot_density, plot_history, plot_lines,
                         plot_sharpness)

    figs = out / "figures"
    labels = [LABELS["small_batch"], LABELS["large_batch"]]
    order = ["small_batch", "large_batch"]
    files = {
        "interpolation": figs / "interpolation.png",
        "lines_1d": figs / "surfaces_1d.png",
        "contours_2d": figs / "contours_2d.png",
        "spectrum": figs / "spectrum.png",
        "training": figs / "training.png",
    }
    plot_lines(interp, labels=["small batch -> large batch"],
               xlabel=r"$\alpha$ in $(1-\alpha)\,\theta_{small} + \alpha\,\theta_{large}$",
               title="Linear interpolation between the two minima",
               out=files["interpolation"])
    losses = dict(metrics=("train_loss", "test_loss"), accuracy=False, labels=labels,
                  rise=config.rise)
    plot_lines([surfaces[k]["1d"] for k in order], **losses,
               xlabel="random filter-normalized direction (the same seed for both)",
               title="Loss along a random direction", out=files["lines_1d"])
    plot_contours([surfaces[k]["2d"] for k in order], metric="train_loss", kind="filled",
                  labels=labels, rise=config.rise, levels=12,
                  title="Training loss on a random filter-normalized plane",
                  out=files["contours_2d"])
    densities, sigma = _shared_densities([curvature[k]["density"] for k in order])
    plot_density(densities, labels=labels, out=files["spectrum"],
                 title=f"Hessian spectral density (one Gaussian kernel, σ = {sigma:.2g})")
    plot_history([histories[k]["epochs"] for k in order], labels=labels,
                 out=files["training"])
    if eigen:
        files["eigen_slices"] = figs / "eigen_slices.png"
        plot_lines([eigen[k]["surface"] for k in order], **losses,
                   xlabel="along each model's own top Hessian eigenvector (unit norm)",
                   title="Loss along the sharpest direction of each minimum",
                   note="Unit-norm eigenvector slices change under a function-preserving "
                        "rescaling of ReLU layers (Dinh et al. 2017); filter-normalized "
                        "random slices do not.", out=files["eigen_slices"])
    if any("lambda_max" in e for k in order for e in histories[k]["epochs"]):
        files["sharpness"] = figs / "sharpness.png"
        runs = [config.runs()[k] for k in order]
        plot_sharpness([histories[k]["epochs"] for k in order], labels=labels,
                       thresholds=[_threshold(r) for r in runs],
                       threshold_names=["2(1+β)/lr" if r.momentum else "2/lr" for r in runs],
                       title="Sharpness during training", out=files["sharpness"])
    if config.render_3d:
        try:
            from .plot3d import render_surface

            files["surface_3d"] = figs / "surface_3d.png"
            render_surface([surfaces[k]["2d"] for k in order], files["surface_3d"],
                           metric="train_loss", labels=labels, size=(700, 560))
        except LandscapeError as exc:  # rendering is optional; the numbers are not
            files.pop("surface_3d", None)
            say(f"    3-D figure skipped: {exc}")
    return files


def _vw_figures(config: StudyConfig, vw: dict[str, Any], surfaces, out: Path,
                say: Callable[[str], None]) -> dict[str, Path]:
    """The V beside the W (2-D, and 3-D when enabled) on one colour scale, and the line
    between two minima against their curve."""
    from .plot2d import plot_contours, plot_paths

    figs = out / "figures"
    files = {"v_versus_w_2d": figs / "v_versus_w_2d.png",
             "v_versus_w_paths": figs / "v_versus_w_paths.png"}
    pair = [surfaces["small_batch"]["2d"], vw["plane"]]
    labels = ["V: one minimum (small batch)", "W: three minima (" + ", ".join(vw["names"][:3])
              + ")"]
    vmax = _vw_vmax(vw["plane"])
    plot_contours(pair, metric="train_loss", kind="filled", labels=labels, vmax=vmax,
                  log=True, levels=24, share_axes=False,
                  title="One basin versus three (training loss, shared log scale)",
                  out=files["v_versus_w_2d"])
    plot_paths([vw["curve"], vw["line"]],
               title=f"Between {vw['names'][0]} and {vw['names'][1]}: curve vs straight line",
               out=files["v_versus_w_paths"])
    if config.render_3d:
        try:
            from .plot3d import render_surface

            files["v_versus_w_3d"] = figs / "v_versus_w_3d.png"
            # Short titles: a 3-D panel's title is centred and clipped at the panel's edge.
            render_surface(pair, files["v_versus_w_3d"], metric="train_loss",
                           labels=["V: one minimum", "W: three minima"], zmax=vmax, log=True,
                           size=(700, 560))
        except LandscapeError as exc:
            files.pop("v_versus_w_3d", None)
            say(f"    3-D figure of V versus W skipped: {exc}")
    return files


def _threshold(run: RunSpec) -> float | None:

    return stability_threshold(run.optimizer, run.lr, run.momentum)


def _shared_densities(spectra: list[dict[str, Any]]) -> tuple[list[tuple], float]:
    """Both densities smoothed with one kernel on one grid (from the stored Ritz nodes and
    weights); the stored curves as they are if an older step left no nodes."""

    if not all("nodes" in s and "weights" in s for s in spectra):
        return [(s["grid"], s["density"]) for s in spectra], max(s["sigma"] for s in spectra)
    dens, grid, sigma = common_densities([(s["nodes"], s["weights"]) for s in spectra])
    return [(grid, d) for d in dens], sigma


def _vw_vmax(plane) -> float:
    """Colour clip of the V-versus-W figures: well above the highest barrier between the
    three minima, so their basins and the saddles between them get distinct colours, but
    below the far corners' loss, which would squeeze the basins into one colour."""

    shape = surface_shape(plane, metric="train_loss", rise=0.1)
    saddles = [saddle for _, saddle in shape.barriers]
    top = max(saddles) if saddles else float(np.nanmax(plane.metrics["train_loss"]))
    return float(min(max(3.0 * top, 0.5), 10.0))
def _scenes(config, surfaces, out: Path, say: Callable[[str], None]) -> dict[str, Path]:
    """The two minima's planes as one interactive 3-D page (vtk.js, opens offline), on the
    scale of the 3-D figure; skipped, with a line saying why, when it cannot be made."""
    if not config.render_3d:
        return {}
    from .plot3d import export_html, web_export_missing

    missing = web_export_missing()
    if missing:
        say(f"    interactive 3-D scene skipped: {missing}")
        return {}
    path = out / "figures" / "surface_3d.html"
    start = time.perf_counter()
    try:
        export_html([surfaces[k]["2d"] for k in ("small_batch", "large_batch")], path,
                    "train_loss", labels=[LABELS["small_batch"], LABELS["large_batch"]],
                    title="Training loss around each minimum")
    except LandscapeError as exc:
        say(f"    interactive 3-D scene skipped: {exc}")
        return {}
    say(f"    interactive 3-D scene: {path.relative_to(out)} "
        f"({time.perf_counter() - start:.1f} s)")
    return {"surface_3d": path}


