"""Compare minima that already exist: the study's measurements, figures and report for two or
more checkpoints (``landscape compare``). ``landscape demo`` trains its two runs and then
compares them here, so both share this one path.

``compare(checkpoints, out_dir)`` writes, under ``out_dir``: ``surfaces/*.h5`` (interpolation
between the first two, 1-D and 2-D surfaces around each, the plane through the first three),
``directions/*.h5``, ``curvature/<name>.json``, ``sharpness/<name>.json``, ``figures/*.png``,
``summary.json``, ``report.md`` and ``report.html``. Each step records a key of what it depends
on (the weights, the data, the settings) in ``study_state.json``; a re-run skips steps whose key
and outputs are unchanged, and an interrupted one resumes with the first unfinished step.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import re
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch.nn as nn

from ._util import provenance, sha256_tensors, write_json
from .checkpoint import (check_dataset_code, checkpoint_labels, checkpoint_path,
                         load_checkpoint, trained_loss)
from .connect import ConnectOptions, connect, path_summary
from .data import DataBundle, load_dataset
from .directions import (hessian_directions, interpolation_direction, plane_directions,
                         random_directions, save_directions)
from .errors import LandscapeError
from .hessian import (SPECTRUM_FORMAT_VERSION, HessianOptions, common_densities,
                      directional_curvature, hessian_density, hessian_eigenvalues, hessian_trace,
                      spectrum_record)
from .losses import loss_function
from .models import count_parameters
from .params import flatten
from .shape import surface_shape
from .sharpness import measure_sharpness
from .store import load_surface, save_surface
from .surface import SurfaceOptions, compute_surface
from .train import evaluate_split, load_history, stability_threshold

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")


@dataclasses.dataclass(frozen=True, kw_only=True)
class CompareConfig:
    """What is measured around each minimum. The defaults are the demo's.

    Attributes:
        seed: seed of the random directions (the same for every minimum), of Lanczos start
            vectors and of sharpness draws.
        line_points, line_range: 1-D filter-normalized surfaces.
        plane_points, plane_range: 2-D filter-normalized surfaces (square grid, training
            loss and accuracy only: the figures and basin shapes use the training loss). The
            default half-width 0.5 holds the basins of the MNIST-1D CNN (its loss passes 10
            near 0.6); 25 points per side resolve them (step 0.042, a fifth of their width).
        interp_points, interp_range: interpolation from the first minimum to the second.
        top_k: Hessian eigenvalues per model.
        trace_products: Hessian-vector products for the trace (Hutch++).
        density_probes, density_steps: stochastic Lanczos quadrature.
        eps: Keskar sharpness box sizes.
        rho: adaptive sharpness radius (l2).
        sharpness_samples: draws for average-case adaptive sharpness.
        rise: loss increase that bounds a basin (basin width).
        eigen_points, eigen_range: 1-D slices along each model's top Hessian eigenvector
            (unit norm; 0 points: none).
        render_3d: draw the 3-D figure and the interactive scene (pyvista, offscreen).
        device: torch device (None: best available).
        w_plane_points, w_plane_margin: the plane through the first three minima (points per
            side, margin beyond them), when there are three or more.
        curve_epochs, curve_points: a Bezier curve trained between the first two minima
            against the straight line (0 epochs: none).
    """

    seed: int = 0
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
    eigen_points: int = 41
    eigen_range: tuple[float, float] = (-0.3, 0.3)
    render_3d: bool = True
    device: str | None = None
    w_plane_points: int = 17
    w_plane_margin: float = 0.35
    curve_epochs: int = 30
    curve_points: int = 21

    QUICK = dict(line_points=21, plane_points=13, interp_points=25, eigen_points=21, top_k=3,
                 trace_products=30, density_probes=1, density_steps=40, eps=(1e-3,),
                 sharpness_samples=3, w_plane_points=11, curve_points=11, curve_epochs=10)
    """Coarse grids and fewer products: a smoke run (``quick()``)."""

    @classmethod
    def quick(cls, **overrides: Any):
        """The same measurements on coarse grids with fewer products."""
        return cls(**{**cls.QUICK, **overrides})


@dataclasses.dataclass(frozen=True)
class StudyResult:
    """What ``compare`` or ``run_study`` produced.

    Attributes:
        summary: the content of ``summary.json``.
        out_dir: the output folder.
        files: name -> path of the main outputs (report, summary, figures).
        reused: steps skipped because their outputs were up to date.
        seconds: wall time.
    """

    summary: dict[str, Any]
    out_dir: Path
    files: dict[str, Path]
    reused: tuple[str, ...]
    seconds: float


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
    if len(paths) < 2:
        raise LandscapeError(f"compare needs at least two checkpoints, got {len(paths)}")
    labels = list(labels) if labels is not None else checkpoint_labels(paths)
    if len(labels) != len(paths):
        raise LandscapeError(f"{len(labels)} labels for {len(paths)} checkpoints")
    names = [slug(label) for label in labels]
    if len(set(names)) != len(names):
        raise LandscapeError(f"labels must differ (as file names they read {names}); give "
                             "--labels")
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
        key = _key(sha256_tensors(model.state_dict()), info.get("model"))
        minima.append(Minimum(name=name, label=label, model=model, key=key, path=path,
                              train=extra.get("config"), final=extra.get("final"),
                              history=history, loss=trained_loss(info)))
    losses = {m.loss for m in minima}
    if len(losses) > 1:
        raise LandscapeError(f"the checkpoints were trained with different losses "
                             f"({', '.join(sorted(losses))}): their curvatures do not compare")
    return minima, dataset


def compare(checkpoints: Sequence[str | Path], out_dir: str | Path = "compare", *,
            config: CompareConfig = CompareConfig(), labels: Sequence[str] | None = None,
            data: DataBundle | Mapping[str, Any] | None = None, force: bool = False,
            progress: bool = True, log: Callable[[str], None] | None = print) -> StudyResult:
    """Measure, draw and report two or more minima you already have.

    Around each: interpolation (first to second), 1-D and 2-D filter-normalized surfaces,
    Hessian eigenvalues, trace and spectral density, sharpness, the slice along its top
    eigenvector and its basin shape; with three or more, the plane through the first three
    (how many basins, the barriers between them); with ``config.curve_epochs``, a trained
    curve between the first two against the straight line.

    Args:
        checkpoints: checkpoint files or ``landscape train`` run folders (their model.pt),
            of one architecture; the first is the reference of ratios.
        out_dir: folder for every output; steps already done there are reused.
        config: what to measure (``CompareConfig()`` as the demo, ``.quick()`` coarse).
        labels: names in figures and the report (default: run folder or file names).
        data: a DataBundle, or keyword arguments of ``load_dataset`` (default: the dataset the
            first checkpoint records, as it was trained).
        force: recompute every step.
        progress: show progress bars of the long steps.
        log: called with one line per step (None: silent).

    Returns:
        StudyResult with the summary and the paths written.
    """
    start = time.perf_counter()
    minima, dataset = load_minima(checkpoints, labels)
    if not isinstance(data, DataBundle):
        spec = dict(data) if data is not None else dict(dataset or {"name": "mnist1d"})
        if data is None:
            check_dataset_code(spec, "If you trust it, compare within "
                                     "checkpoint.trusted_code(True), or pass data=")
        data = load_dataset(**spec)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = Stages(log, 5 + has_v_versus_w(config, minima))
    steps, clock = Steps(out, force), Clock()
    summary, figures, scenes = measure(config, data, minima, out, steps, clock, say, progress)
    return finish(summary, figures, scenes, out, steps, clock, start)


# ----------------------------------------------------------------------------- run records

class Steps:
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

    def run(self, name: str, key: str, outputs: list[Path], load: Callable[[], Any],
            compute: Callable[[], Any]) -> Any:
        """``load()`` the step's outputs if they are current, else ``compute()`` them and
        record the step as done."""
        if self.current(name, key, outputs):
            return load()
        result = compute()
        self.mark(name, key)
        return result


class Clock:
    """Wall seconds per step (``summary["step_seconds"]``), to see where the time goes."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0)
                                       + time.perf_counter() - t0, 2)


class Stages:
    """Numbered progress lines ``[k/total] ...`` (and plain ones) to a logger."""

    def __init__(self, log: Callable[[str], None] | None, total: int):
        self.log, self.total, self.done = log or (lambda _msg: None), total, 0

    def __call__(self, message: str) -> None:
        self.log(message)

    def step(self, message: str) -> None:
        self.done += 1
        self.log(f"[{self.done}/{self.total}] {message}")


def _key(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- the steps

def measure(config: CompareConfig, bundle: DataBundle, minima: list[Minimum], out: Path,
            steps: Steps, clock: Clock, say: Stages, progress: bool,
            vw_minima: list[Minimum] | None = None
            ) -> tuple[dict[str, Any], dict[str, Path], dict[str, Path]]:
    """Every measurement of ``compare``, then its figures: ``(summary, figures, scenes)``.
    The V-versus-W section draws on ``vw_minima`` (default: ``minima``): the plane through
    the first three, the curve between the first two; the V is the first minimum's plane."""
    loss = minima[0].loss
    vw_minima = vw_minima or minima
    ctx = dict(config=config, bundle=bundle, minima=minima, out=out, steps=steps,
               progress=progress, loss=loss)
    say.step(f"interpolating from {minima[0].label} to {minima[1].label}")
    with clock("interpolation"):
        interp = _interpolation(**ctx)
    say.step("1-D and 2-D filter-normalized surfaces")
    with clock("surfaces"):
        surfaces = _surfaces(**ctx)
    say.step("Hessian eigenvalues, trace and spectral density")
    with clock("curvature"):
        curvature = _curvature(**ctx)
    say.step("sharpness and slices along the top Hessian eigenvector")
    with clock("sharpness"):
        sharp = _sharpness(**ctx)
    with clock("eigen_slices"):
        eigen = _eigen_slices(**ctx)
    vw = None
    if has_v_versus_w(config, vw_minima):
        labels = [m.label for m in vw_minima]
        say.step("V versus W: " + " and ".join(
            ([f"the plane through {', '.join(labels[:3])}"] if len(labels) >= 3 else [])
            + ([f"a curve between {labels[0]} and {labels[1]}"] if config.curve_epochs else [])))
        with clock("v_versus_w"):
            vw = v_versus_w(config, bundle, vw_minima, out, steps, progress, loss)
    summary = _summary(config, bundle, minima, curvature, sharp, interp, surfaces, eigen)
    v_plane = surfaces[minima[0].name]["2d"]
    if vw is not None:
        summary["v_versus_w"] = vw_summary(config, vw, v_plane, minima[0])
    say.step("figures and report")
    with clock("figures"):
        figures = _figures(config, minima, interp, surfaces, curvature, out, say, eigen)
        if vw is not None:
            figures.update(vw_figures(config, vw, v_plane, minima[0], out, say))
        scenes = _scenes(config, minima, surfaces, out, say)
    return summary, figures, scenes


def has_v_versus_w(config: CompareConfig, minima: Sequence[Minimum]) -> bool:
    """Whether ``measure`` makes a V-versus-W section of these minima (a plane through three,
    or a trained curve between two)."""
    return len(minima) >= 3 or (len(minima) >= 2 and config.curve_epochs > 0)


def finish(summary: dict[str, Any], figures: dict[str, Path], scenes: dict[str, Path],
           out: Path, steps: Steps, clock: Clock, start: float) -> StudyResult:
    """Record figures, timings and reuse in the summary; write it and the report."""
    from .report import write_report

    summary["figures"] = {k: str(p.relative_to(out)) for k, p in figures.items()}
    summary["scenes"] = {k: str(p.relative_to(out)) for k, p in scenes.items()}
    summary["step_seconds"] = clock.seconds
    summary["seconds"] = time.perf_counter() - start
    summary["reused_steps"] = list(steps.reused)
    files = write_report(summary, out)
    files.update({f"figure_{k}": p for k, p in figures.items()})
    files.update({f"scene_{k}": p for k, p in scenes.items()})
    return StudyResult(summary=summary, out_dir=out, files=files, reused=tuple(steps.reused),
                       seconds=summary["seconds"])


def _interpolation(config, bundle, minima, out, steps, progress, loss):
    path = out / "surfaces" / "interpolation.h5"
    a, b = minima[0], minima[1]
    key = _key(a.key, b.key, bundle.spec, loss, config.interp_range, config.interp_points)

    def compute():
        anchors = {"coords": np.array([[0.0], [1.0]]), "labels": np.array([a.label, b.label])}
        return compute_surface(a.model, bundle, [interpolation_direction(a.model, b.model)],
                               x=np.linspace(*config.interp_range, config.interp_points),
                               options=SurfaceOptions(metrics=METRICS, progress=progress,
                                                      device=config.device, loss=loss),
                               out=path, force=True, anchors=anchors,
                               provenance=provenance(step="interpolation"))
    return steps.run("interpolation", key, [path], lambda: load_surface(path), compute)


def _surfaces(config, bundle, minima, out, steps, progress, loss):
    """1-D and 2-D surfaces around each model: the same direction seed for all, each
    direction filter-normalized to its own model's weights."""

    result: dict[str, dict[str, Any]] = {}
    line = np.linspace(*config.line_range, config.line_points)
    plane = np.linspace(*config.plane_range, config.plane_points)
    for m in minima:
        dpath = out / "directions" / f"{m.name}.h5"
        paths = {"1d": out / "surfaces" / f"{m.name}_1d.h5",
                 "2d": out / "surfaces" / f"{m.name}_2d.h5"}
        key = _key(m.key, bundle.spec, loss, config.seed, config.line_range,
                   config.line_points, config.plane_range, config.plane_points)

        def compute(m=m, dpath=dpath, paths=paths):
            dirs = random_directions(m.model, count=2, norm="filter", ignore="biasbn",
                                     seed=config.seed)
            save_directions(dpath, dirs, provenance(step=f"directions {m.label}",
                                                    seed=config.seed), overwrite=True)
            options = SurfaceOptions(metrics=METRICS, progress=progress, device=config.device,
                                     seed=config.seed, loss=loss)
            return {
                "1d": compute_surface(m.model, bundle, dpath, x=line, out=paths["1d"],
                                      force=True, options=options,
                                      provenance=provenance(step=f"1-D surface {m.label}")),
                # The planes' test metrics are never drawn or summarized: a fifth of their cost.
                "2d": compute_surface(m.model, bundle, dpath, x=plane, y=plane,
                                      out=paths["2d"], force=True,
                                      options=dataclasses.replace(options, metrics=METRICS[:2]),
                                      provenance=provenance(step=f"2-D surface {m.label}")),
            }
        result[m.name] = steps.run(
            f"surfaces_{m.name}", key, [dpath, *paths.values()],
            lambda paths=paths: {k: load_surface(p) for k, p in paths.items()}, compute)
    return result


def _curvature(config, bundle, minima, out, steps, progress, loss):

    def measure_one(model) -> dict[str, Any]:
        common = dict(seed=config.seed, options=HessianOptions(device=config.device,
                                                               progress=progress, loss=loss))
        # The bottom end's default tolerance (1e-5 of the spectrum's width) brackets the
        # smallest eigenvalue tightly enough to tell a negative one from zero.
        eig = hessian_eigenvalues(model, bundle.train, k=config.top_k, which="both",
                                  k_smallest=1, **common)
        trace = hessian_trace(model, bundle.train, n_products=config.trace_products, **common)
        density = hessian_density(model, bundle.train, n_probes=config.density_probes,
                                  n_steps=config.density_steps, **common)
        return spectrum_record(eigen=eig, n_bottom=1, trace=trace, density=density,
                               split="train", mode=eig.mode)

    settings = (bundle.spec, loss, config.top_k, config.trace_products, config.density_probes,
                config.density_steps, config.seed, SPECTRUM_FORMAT_VERSION)
    return _per_model_json("curvature", minima, out, steps, settings, measure_one)


EIGEN_STEP = 1e-6
"""Step of the eigen-slice curvature check: longer steps cross ReLU kinks (see
``landscape.hessian.directional_curvature``)."""


def _eigen_slices(config, bundle, minima, out, steps, progress, loss):
    """Per model: a 1-D surface along its own top Hessian eigenvector (unit norm), and the
    check that the loss's second difference there (float64, h = ``EIGEN_STEP``) is the
    eigenvalue."""

    if not config.eigen_points:
        return {}
    result: dict[str, dict[str, Any]] = {}
    line = np.linspace(*config.eigen_range, config.eigen_points)
    for m in minima:
        dpath = out / "directions" / f"{m.name}_hessian.h5"
        paths = {"surface": out / "surfaces" / f"{m.name}_eigen_1d.h5",
                 "check": out / "curvature" / f"{m.name}_eigen_slice.json"}
        key = _key(m.key, bundle.spec, loss, config.seed, config.eigen_range,
                   config.eigen_points, EIGEN_STEP)

        def load(paths=paths):
            return {"surface": load_surface(paths["surface"]),
                    "check": json.loads(paths["check"].read_text())}

        def compute(m=m, dpath=dpath, paths=paths):
            found = hessian_directions(m.model, bundle, count=1, seed=config.seed,
                                       device=config.device, loss=loss)
            save_directions(dpath, found.directions, provenance(
                step=f"eigenvector {m.label}", **found.recipe()), overwrite=True)
            second = directional_curvature(m.model, bundle.train, flatten(found.directions[0]),
                                           step=EIGEN_STEP, device=config.device, loss=loss)
            value = float(found.eigenvalues[0])
            check = {"eigenvalue": value, "residual": float(found.residuals[0]),
                     "second_difference": second, "step": EIGEN_STEP,
                     "relative_error": abs(second - value) / abs(value)}
            write_json(paths["check"], check)
            surface = compute_surface(
                m.model, bundle, dpath, x=line, out=paths["surface"], force=True,
                options=SurfaceOptions(metrics=METRICS, progress=progress,
                                       device=config.device, seed=config.seed, loss=loss),
                provenance=provenance(step=f"eigenvector slice {m.label}", **found.recipe()))
            return {"surface": surface, "check": check}
        result[m.name] = steps.run(f"eigen_{m.name}", key, [dpath, *paths.values()], load,
                                   compute)
    return result


def _sharpness(config, bundle, minima, out, steps, progress, loss):

    def measure_one(model) -> dict[str, Any]:
        return measure_sharpness(model, bundle, eps=config.eps, rho=config.rho,
                                 samples=config.sharpness_samples, seed=config.seed,
                                 progress=progress, loss=loss).to_dict()

    settings = (bundle.spec, loss, config.eps, config.rho, config.sharpness_samples,
                config.seed)
    return _per_model_json("sharpness", minima, out, steps, settings, measure_one)


def _per_model_json(step: str, minima: list[Minimum], out: Path, steps: Steps,
                    settings: tuple, measure_one: Callable[[Any], dict[str, Any]]
                    ) -> dict[str, dict[str, Any]]:
    """Run ``measure_one(model)`` for each model, or reuse ``out/<step>/<name>.json`` when
    the model and ``settings`` are unchanged."""
    result = {}
    for m in minima:
        path = out / step / f"{m.name}.json"

        def compute(m=m, path=path):
            record = measure_one(m.model)
            write_json(path, record)
            return record
        result[m.name] = steps.run(f"{step}_{m.name}", _key(m.key, *settings), [path],
                                   lambda path=path: json.loads(path.read_text()), compute)
    return result


def v_versus_w(config: CompareConfig, bundle: DataBundle, minima: list[Minimum], out: Path,
               steps: Steps, progress: bool, loss: str = "cross_entropy") -> dict[str, Any]:
    """Many minima of one network: the plane through the first three (if there are three),
    and the straight line against a trained Bezier curve between the first two (if
    ``config.curve_epochs``)."""
    result: dict[str, Any] = {"names": [m.label for m in minima]}
    if len(minima) >= 3:
        result["plane"] = _w_plane(config, bundle, minima[:3], out, steps, progress, loss)
    if config.curve_epochs > 0:
        result["curve"], result["line"] = _w_curve(config, bundle, minima[:2], out, steps,
                                                   progress, loss)
    return result


def _w_plane(config, bundle, minima, out, steps, progress, loss):
    path = out / "surfaces" / "w_plane.h5"
    names = [m.label for m in minima]
    key = _key([m.key for m in minima], bundle.spec, loss, config.w_plane_points,
               config.w_plane_margin, names)

    def compute():
        # Orthogonal axes of equal length: distances on the figure are true distances.
        dirs, coords = plane_directions(*(m.model for m in minima), orthogonal=True)
        margin, n = config.w_plane_margin, config.w_plane_points
        x = np.linspace(coords[:, 0].min() - margin, coords[:, 0].max() + margin, n)
        y = np.linspace(coords[:, 1].min() - margin, coords[:, 1].max() + margin, n)
        return compute_surface(
            minima[0].model, bundle, dirs, x=x, y=y, out=path, force=True,
            options=SurfaceOptions(metrics=METRICS, progress=progress, device=config.device,
                                   loss=loss),
            anchors={"coords": coords, "labels": np.array(names)},
            provenance=provenance(step="plane through three minima", type="plane",
                                  axis_labels=[f"{names[1]} - {names[0]}",
                                               f"{names[2]} - {names[0]} (orthogonal part)"]))
    return steps.run("w_plane", key, [path], lambda: load_surface(path), compute)


def _w_curve(config, bundle, minima, out, steps, progress, loss):
    paths = [out / "surfaces" / "w_curve.h5", out / "surfaces" / "w_line.h5"]
    names = tuple(m.label for m in minima)
    key = _key([m.key for m in minima], bundle.spec, loss, config.curve_epochs,
               config.curve_points, config.seed, config.device, names)

    def compute():
        state = out / "curves" / f"bezier_{key}.state.pt"
        for stale in state.parent.glob("*.state.pt"):  # other settings' states cannot resume
            if stale != state:
                stale.unlink()
        options = ConnectOptions(epochs=config.curve_epochs, points=config.curve_points,
                                 seed=config.seed, device=config.device, loss=loss)
        result = connect(minima[0].model, minima[1].model, bundle, options=options,
                         state_path=state, resume=True, progress=progress, names=names)
        save_surface(paths[0], result.curve)
        save_surface(paths[1], result.line)
        return result.curve, result.line
    return steps.run("w_curve", key, paths,
                     lambda: (load_surface(paths[0]), load_surface(paths[1])), compute)


# ----------------------------------------------------------------------------- summary

def _finite(value: Any) -> Any:
    """JSON-safe: NaN and inf become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _training(m: Minimum, n_train: int) -> dict[str, Any]:
    """What the checkpoint records of its training (None where it records nothing)."""
    train, final = m.train or {}, m.final or {}
    batch = train.get("batch_size")
    status = (m.history or {}).get("status") or {}
    return {"batch_size": n_train if batch == "full" else batch, "full_batch": batch == "full",
            "lr": train.get("lr"), "epochs": train.get("epochs"),
            "optimizer": train.get("optimizer"), "momentum": train.get("momentum"),
            "steps": final.get("step"), "train_seconds": status.get("seconds")}


def _shape(surface, rise: float) -> dict[str, Any]:
    return surface_shape(surface, metric="train_loss", rise=rise).to_dict()


def _summary(config: CompareConfig, bundle: DataBundle, minima: list[Minimum], curvature,
             sharp, interp, surfaces, eigen) -> dict[str, Any]:

    loss_fn = loss_function(minima[0].loss)
    (xtr, ytr), (xte, yte) = bundle.train, bundle.test
    models = {}
    for m in minima:
        eig = curvature[m.name]["eigenvalues"]
        first_eps = sharp[m.name]["epsilon"][0]
        adaptive = sharp[m.name]["adaptive"][0] if sharp[m.name]["adaptive"] else None
        shape1d = _shape(surfaces[m.name]["1d"], config.rise)
        shape2d = _shape(surfaces[m.name]["2d"], config.rise)
        train_loss, train_acc = evaluate_split(m.model, xtr, ytr, loss_fn)
        test_loss, test_acc = evaluate_split(m.model, xte, yte, loss_fn)
        models[m.name] = {
            "label": m.label, "checkpoint": str(m.path) if m.path else None,
            **_training(m, len(ytr)),
            "train_loss": train_loss, "train_accuracy": train_acc,
            "test_loss": test_loss, "test_accuracy": test_acc,
            "generalization_gap": train_acc - test_acc,
            "top_eigenvalue": max(eig["top"]),
            "top_eigenvalues": sorted(eig["top"], reverse=True),
            "bottom_eigenvalue": eig["bottom"][0],
            "eigen_residuals": eig["residuals"],
            "trace": curvature[m.name]["trace"]["estimate"],
            "trace_stderr": curvature[m.name]["trace"]["stderr"],
            "sharpness": first_eps["value"],
            "sharpness_eps": first_eps["eps"],
            "sharpness_all": {f"eps={e['eps']:g}": e["value"]
                              for e in sharp[m.name]["epsilon"]},
            "adaptive_sharpness": adaptive["value"] if adaptive else None,
            "average_sharpness": (sharp[m.name]["average"] or {}).get("mean"),
            "basin_label_1d": shape1d["label"], "basin_label_2d": shape2d["label"],
            "basins_2d": shape2d["n_basins"],
            "basin_width_1d": _finite(shape1d["width"]),
            "basin_width_2d": _finite(shape2d["width"]),
            "curvature_1d": shape1d["curvature"][0],
            "surface_min_train_loss": _finite(surfaces[m.name]["2d"].summary("train_loss")["min"]),
        }
    first = models[minima[0].name]
    ratios = {name: {q: (entry[q] / first[q] if first[q] else None)
                     for q in ("top_eigenvalue", "trace", "sharpness")}
              for name, entry in models.items() if name != minima[0].name}
    return {
        "labels": [m.name for m in minima], "models": models, "ratios": ratios,
        "interpolation": {
            "between": [minima[0].label, minima[1].label],
            "alpha": interp.x.tolist(),
            "train_loss": [_finite(float(v)) for v in interp.metrics["train_loss"]],
            "test_loss": [_finite(float(v)) for v in interp.metrics["test_loss"]],
            "barrier": _barrier(interp)},
        "eigen_slices": {k: v["check"] for k, v in eigen.items()},
        "setup": {"dataset": bundle.name, "train_examples": len(ytr),
                  "test_examples": len(yte), "model": _model_name(minima[0]),
                  "model_options": getattr(minima[0].model, "landscape_spec", {}).get(
                      "options", {}),
                  "parameters": count_parameters(minima[0].model), "seed": config.seed,
                  "loss": minima[0].loss,
                  "hessian_mode": curvature[minima[0].name]["eigenvalues"]["mode"],
                  "config": json.loads(json.dumps(dataclasses.asdict(config), default=str))},
        "provenance": provenance(),
    }


def _model_name(m: Minimum) -> str:
    return str(getattr(m.model, "landscape_spec", {}).get("name") or type(m.model).__name__)


def _barrier(interp) -> float | None:
    """Highest train loss between the two models (alpha in [0, 1]) above the higher end."""
    x, loss = interp.x, interp.metrics["train_loss"]
    inside = (x >= 0) & (x <= 1)
    if not inside.any():
        return None
    ends = max(float(np.interp(0.0, x, loss)), float(np.interp(1.0, x, loss)))
    return _finite(float(np.nanmax(loss[inside])) - ends)


def vw_summary(config: CompareConfig, vw: dict[str, Any], v_plane, v_minimum: Minimum
               ) -> dict[str, Any]:
    """``summary["v_versus_w"]``: basin counts, barrier heights and the curve's maximum."""

    def shape_of(surface) -> dict[str, Any]:
        shape = surface_shape(surface, metric="train_loss", rise=config.rise)
        return {"label": shape.label, "basins": shape.n_basins, "rule": shape.rule,
                "minima": [{"at": list(at), "train_loss": v} for at, v, _ in shape.minima],
                "barriers": [{"at": list(at), "saddle": saddle,
                              "height": saddle - next(v for a, v, _ in shape.minima if a == at)}
                             for at, saddle in shape.barriers]}

    v = shape_of(v_plane)
    result: dict[str, Any] = {
        "v": {"surface": f"surfaces/{v_minimum.name}_2d.h5", "around": v_minimum.label,
              "label": v["label"], "basins": v["basins"], "rule": v["rule"]}}
    if "plane" in vw:
        result["w_plane"] = {"surface": "surfaces/w_plane.h5", "through": vw["names"][:3],
                             **shape_of(vw["plane"])}
    if "curve" in vw:
        paths = path_summary(vw["curve"], vw["line"])
        result.update({
            "line": {"surface": "surfaces/w_line.h5", "between": vw["names"][:2],
                     **shape_of(vw["line"]), **paths["line"]},
            "curve": {"surface": "surfaces/w_curve.h5", "kind": "bezier",
                      "epochs": config.curve_epochs, **shape_of(vw["curve"]),
                      **paths["curve"]},
            "curve_max_train_loss": paths["curve"]["max_train_loss"],
            "line_max_train_loss": paths["line"]["max_train_loss"]})
    return result


# ----------------------------------------------------------------------------- figures

def _figures(config: CompareConfig, minima: list[Minimum], interp, surfaces, curvature,
             out: Path, say: Callable[[str], None], eigen=None) -> dict[str, Path]:
    """The comparison's figures. Where minima are compared, a linear loss axis capped near the
    minima (``plot2d.loss_cap``) with each basin's width at ``config.rise`` marked, so that a
    glance ranks them as the measured widths do; one kernel width for all spectra."""
    from .plot2d import (plot_contours, plot_density, plot_history, plot_lines,
                         plot_sharpness)

    figs = out / "figures"
    labels = [m.label for m in minima]
    names = [m.name for m in minima]
    files = {"interpolation": figs / "interpolation.png", "lines_1d": figs / "surfaces_1d.png",
             "contours_2d": figs / "contours_2d.png", "spectrum": figs / "spectrum.png"}
    a, b = minima[0], minima[1]
    plot_lines(interp, labels=[f"{a.label} -> {b.label}"],
               xlabel=r"$\alpha$ in $(1-\alpha)\,\theta_A + \alpha\,\theta_B$"
                      f"  (A: {a.label}, B: {b.label})",
               title="Linear interpolation between two minima", out=files["interpolation"],
               log=True)  # a log axis: the barrier between the minima and their depth alike
    losses = dict(metrics=("train_loss", "test_loss"), accuracy=False, labels=labels,
                  rise=config.rise)
    plot_lines([surfaces[k]["1d"] for k in names], **losses,
               xlabel="random filter-normalized direction (the same seed for each)",
               title="Loss along a random direction", out=files["lines_1d"])
    plot_contours([surfaces[k]["2d"] for k in names], metric="train_loss", kind="filled",
                  labels=labels, rise=config.rise, levels=12,
                  title="Training loss on a random filter-normalized plane",
                  out=files["contours_2d"])
    densities, sigma = _shared_densities([curvature[k]["density"] for k in names])
    plot_density(densities, labels=labels, out=files["spectrum"],
                 title=f"Hessian spectral density (one Gaussian kernel, σ = {sigma:.2g})")
    runs = [m for m in minima if m.history]
    if runs:
        files["training"] = figs / "training.png"
        plot_history([m.history["epochs"] for m in runs], labels=[m.label for m in runs],
                     out=files["training"])
    if eigen:
        files["eigen_slices"] = figs / "eigen_slices.png"
        plot_lines([eigen[k]["surface"] for k in names], **losses,
                   xlabel="along each model's own top Hessian eigenvector (unit norm)",
                   title="Loss along the sharpest direction of each minimum",
                   note="Unit-norm eigenvector slices change under a function-preserving "
                        "rescaling of ReLU layers (Dinh et al. 2017); filter-normalized "
                        "random slices do not.", out=files["eigen_slices"])
    tracked = [m for m in runs if any("lambda_max" in e for e in m.history["epochs"])]
    if tracked:
        files["sharpness"] = figs / "sharpness.png"
        thresholds = [stability_threshold(m.train["optimizer"], m.train["lr"],
                                          m.train.get("momentum", 0.0))
                      if m.train else None for m in tracked]
        plot_sharpness([m.history["epochs"] for m in tracked], labels=[m.label for m in tracked],
                       thresholds=thresholds,
                       threshold_names=["2(1+β)/lr" if (m.train or {}).get("momentum")
                                        else "2/lr" for m in tracked],
                       title="Sharpness during training", out=files["sharpness"])
    if config.render_3d:
        _render(files, figs, "surface_3d", say, [surfaces[k]["2d"] for k in names],
                labels=labels, rise=config.rise)
    return files


def _render(files: dict[str, Path], figs: Path, name: str, say: Callable[[str], None],
            surfaces, **options: Any) -> None:
    """Render a 3-D figure into ``files[name]``; a line saying why when it cannot be made."""
    from .plot3d import render_surface

    path = figs / f"{name}.png"
    try:
        render_surface(surfaces, path, metric="train_loss",
                       size=(700, 560), **options)
        files[name] = path
    except LandscapeError as exc:  # rendering is optional; the numbers are not
        say(f"    3-D figure {name} skipped: {exc}")


def vw_figures(config: CompareConfig, vw: dict[str, Any], v_plane, v_minimum: Minimum,
               out: Path, say: Callable[[str], None]) -> dict[str, Path]:
    """The V beside the W (2-D, and 3-D when enabled) on one colour scale, and the line
    between two minima against their curve."""
    from .plot2d import plot_contours, plot_paths

    figs = out / "figures"
    files: dict[str, Path] = {}
    if "plane" in vw:
        files["v_versus_w_2d"] = figs / "v_versus_w_2d.png"
        pair = [v_plane, vw["plane"]]
        vmax = _vw_vmax(vw["plane"])
        plot_contours(pair, metric="train_loss", kind="filled",
                      labels=[f"V: one minimum ({v_minimum.label})",
                              "W: three minima (" + ", ".join(vw["names"][:3]) + ")"],
                      vmax=vmax, log=True, levels=24, share_axes=False,
                      title="One basin versus three (training loss, shared log scale)",
                      out=files["v_versus_w_2d"])
        if config.render_3d:
            # Short titles: a 3-D panel's title is centred and clipped at the panel's edge.
            _render(files, figs, "v_versus_w_3d", say, pair, zmax=vmax, log=True,
                    labels=["V: one minimum", "W: three minima"])
    if "curve" in vw:
        files["v_versus_w_paths"] = figs / "v_versus_w_paths.png"
        plot_paths([vw["curve"], vw["line"]],
                   title=f"Between {vw['names'][0]} and {vw['names'][1]}: curve vs straight "
                         "line", out=files["v_versus_w_paths"])
    return files


def _shared_densities(spectra: list[dict[str, Any]]) -> tuple[list[tuple], float]:
    """All densities smoothed with one kernel on one grid (from the stored Ritz nodes and
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
    return float(f"{min(max(3.0 * top, 0.5), 10.0):.2g}")  # a round number on the scales


def _scenes(config: CompareConfig, minima: list[Minimum], surfaces, out: Path,
            say: Callable[[str], None]) -> dict[str, Path]:
    """The minima's planes as one interactive 3-D page (vtk.js, opens offline), on the
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
        export_html([surfaces[m.name]["2d"] for m in minima], path, "train_loss",
                    labels=[m.label for m in minima], title="Training loss around each minimum",
                    rise=config.rise)
    except LandscapeError as exc:
        say(f"    interactive 3-D scene skipped: {exc}")
        return {}
    say(f"    interactive 3-D scene: {path.relative_to(out)} "
        f"({time.perf_counter() - start:.1f} s)")
    return {"surface_3d": path}
