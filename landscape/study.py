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

from ._util import provenance, write_json
from .errors import LandscapeError

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
        plane_points, plane_range: 2-D filter-normalized surfaces (square grid). The default
            half-width 0.5 holds the basins of the MNIST-1D CNN (its loss passes 10 near 0.6).
        interp_points, interp_range: interpolation from the small- to the large-batch model.
        top_k: Hessian eigenvalues per model.
        trace_products: Hessian-vector products for the trace (Hutch++).
        density_probes, density_steps: stochastic Lanczos quadrature.
        eps: Keskar sharpness box sizes.
        rho: adaptive sharpness radius (l2).
        sharpness_samples: draws for average-case adaptive sharpness.
        rise: loss increase that bounds a basin (basin width).
        render_3d: draw the 3-D figure (pyvista, offscreen).
        device: torch device (None: best available).
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
    plane_points: int = 41
    plane_range: tuple[float, float] = (-0.5, 0.5)
    interp_points: int = 61
    interp_range: tuple[float, float] = (-1.0, 2.0)
    top_k: int = 5
    trace_products: int = 90
    density_probes: int = 3
    density_steps: int = 80
    eps: tuple[float, ...] = (1e-3, 5e-4)
    rho: float = 0.05
    sharpness_samples: int = 10
    rise: float = 0.1
    render_3d: bool = True
    device: str | None = None

    @classmethod
    def quick(cls, **overrides: Any) -> "StudyConfig":
        """The same two models with coarse grids and fewer products: a smoke run."""
        settings: dict[str, Any] = dict(line_points=21, plane_points=13, interp_points=25,
                                        top_k=3, trace_products=30, density_probes=1,
                                        density_steps=40, eps=(1e-3,), sharpness_samples=3)
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
    from ._util import pick_device
    from .data import load_dataset
    from .models import build_model

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
    total = 7
    say(f"[1/{total}] training the small- and the large-batch model")
    models, histories, train_keys = _train_both(config, bundle, out, steps, progress, say)
    say(f"[2/{total}] interpolating from the small- to the large-batch model")
    interp = _interpolation(config, bundle, models, out, steps, train_keys, progress)
    say(f"[3/{total}] 1-D and 2-D filter-normalized surfaces")
    surfaces = _surfaces(config, bundle, models, out, steps, train_keys, progress)
    say(f"[4/{total}] Hessian eigenvalues, trace and spectral density")
    curvature = _curvature(config, bundle, models, out, steps, train_keys, progress)
    say(f"[5/{total}] sharpness")
    sharp = _sharpness(config, bundle, models, out, steps, train_keys, progress)
    say(f"[6/{total}] basin shapes and summary")
    shapes = _shapes(config, surfaces)
    summary = _summary(config, bundle, models, histories, curvature, sharp, shapes, interp,
                       surfaces)
    say(f"[7/{total}] figures and report")
    figures = _figures(config, interp, surfaces, curvature, histories, out, say)
    scenes = _scenes(config, surfaces, out, say)
    summary["figures"] = {k: str(p.relative_to(out)) for k, p in figures.items()}
    summary["scenes"] = {k: str(p.relative_to(out)) for k, p in scenes.items()}
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
    from .checkpoint import load_checkpoint
    from .models import build_model
    from .train import TrainConfig, load_history, train

    models, histories, keys = {}, {}, {}
    for label, run in config.runs().items():
        run_dir = out / "runs" / label
        key = _key(dataclasses.asdict(run), bundle.spec, config.model, config.model_options,
                   config.seed, config.device)
        keys[label] = key
        if not steps.current(f"train_{label}", key, [run_dir / "model.pt"]):
            model = build_model(config.model, bundle, seed=config.seed, **config.model_options)
            tc = TrainConfig(optimizer=run.optimizer, lr=run.lr, momentum=run.momentum,
                             weight_decay=run.weight_decay, batch_size=run.batch_size,
                             epochs=run.epochs, seed=config.seed, device=config.device,
                             eval_every=max(1, run.epochs // 100), progress=progress)
            result = train(model, bundle, tc, out_dir=run_dir)
            if result.diverged:
                raise LandscapeError(f"{LABELS[label]} run: {result.message}")
            steps.mark(f"train_{label}", key)
            say(f"    {LABELS[label]}: test acc {result.final['test_acc']:.3f} "
                f"({result.seconds:.0f} s)")
        models[label], _ = load_checkpoint(run_dir / "model.pt")
        histories[label] = load_history(run_dir)
    return models, histories, keys


def _interpolation(config: StudyConfig, bundle, models, out: Path, steps: _Steps,
                   train_keys: dict[str, str], progress: bool):
    from .directions import interpolation_direction
    from .store import load_surface
    from .surface import compute_surface

    path = out / "surfaces" / "interpolation.h5"
    key = _key(train_keys, config.interp_range, config.interp_points)
    if steps.current("interpolation", key, [path]):
        return load_surface(path)
    direction = interpolation_direction(models["small_batch"], models["large_batch"])
    alpha = np.linspace(*config.interp_range, config.interp_points)
    anchors = {"coords": np.array([[0.0], [1.0]]),
               "labels": np.array([LABELS["small_batch"], LABELS["large_batch"]])}
    surface = compute_surface(models["small_batch"], bundle, [direction], x=alpha,
                              metrics=_METRICS, store=path, force=True, progress=progress,
                              device=config.device, anchors=anchors,
                              provenance=provenance(step="interpolation"))
    steps.mark("interpolation", key)
    return surface


_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")


def _surfaces(config: StudyConfig, bundle, models, out: Path, steps: _Steps,
              train_keys: dict[str, str], progress: bool):
    """1-D and 2-D surfaces around each model: the same direction seed for both, each
    direction filter-normalized to its own model's weights."""
    from .directions import random_directions, save_directions
    from .store import load_surface
    from .surface import compute_surface

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
        common = dict(metrics=_METRICS, force=True, progress=progress, device=config.device,
                      directions_path=str(dpath), seed=config.seed)
        result[label] = {
            "1d": compute_surface(model, bundle, dirs[:1], x=line, store=paths["1d"],
                                  provenance=provenance(step=f"1-D surface {label}"), **common),
            "2d": compute_surface(model, bundle, dirs, x=plane, y=plane, store=paths["2d"],
                                  provenance=provenance(step=f"2-D surface {label}"), **common),
        }
        steps.mark(f"surfaces_{label}", key)
    return result


def _curvature(config: StudyConfig, bundle, models, out: Path, steps: _Steps,
               train_keys: dict[str, str], progress: bool) -> dict[str, dict[str, Any]]:
    from .hessian import hessian_density, hessian_eigenvalues, hessian_trace

    def measure(model) -> dict[str, Any]:
        common = dict(seed=config.seed, device=config.device, progress=progress)
        # The bottom end's default tolerance (1e-5 of the spectrum's width) brackets the
        # smallest eigenvalue tightly enough to tell a negative one from zero.
        eig = hessian_eigenvalues(model, bundle.train, k=config.top_k, which="both",
                                  k_smallest=1, **common)
        trace = hessian_trace(model, bundle.train, n_products=config.trace_products, **common)
        density = hessian_density(model, bundle.train, n_probes=config.density_probes,
                                  n_steps=config.density_steps, **common)
        values = np.asarray(eig.values)
        return {
            "mode": eig.mode, "n_params": eig.n_params,
            "top": sorted(values[1:].tolist(), reverse=True), "bottom": float(values[0]),
            "residuals": np.asarray(eig.residuals).tolist(), "eig_products": eig.n_products,
            "eig_seconds": eig.seconds, "converged": bool(eig.converged),
            "trace": trace.estimate, "trace_stderr": trace.stderr,
            "trace_products": trace.n_products,
            "density": {"grid": density.grid.tolist(), "density": density.density.tolist(),
                        "sigma": density.sigma, "n_products": density.n_products},
        }

    settings = (config.top_k, config.trace_products, config.density_probes,
                config.density_steps, config.seed)
    return _per_model_json("curvature", models, out, steps, train_keys, settings, measure)


def _sharpness(config: StudyConfig, bundle, models, out: Path, steps: _Steps,
               train_keys: dict[str, str], progress: bool) -> dict[str, dict[str, Any]]:
    from .sharpness import measure_sharpness

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


def _shapes(config: StudyConfig, surfaces) -> dict[str, dict[str, Any]]:
    from .shape import surface_shape

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
    from .models import count_parameters

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
            "top_eigenvalue": curvature[label]["top"][0],
            "top_eigenvalues": curvature[label]["top"],
            "bottom_eigenvalue": curvature[label]["bottom"],
            "eigen_residuals": curvature[label]["residuals"],
            "trace": curvature[label]["trace"],
            "trace_stderr": curvature[label]["trace_stderr"],
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
                  "hessian_mode": curvature["small_batch"]["mode"],
                  "config": _config_dict(config)},
        "provenance": provenance(),
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
             say: Callable[[str], None]) -> dict[str, Path]:
    from .plot2d import plot_contours, plot_density, plot_history, plot_lines

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
               title="Linear interpolation between the two minima", log=True,
               out=files["interpolation"])
    plot_lines([surfaces[k]["1d"] for k in order], labels=labels,
               xlabel="filter-normalized direction", title="Loss along a random direction",
               log=True,
               out=files["lines_1d"])
    vmax = _plane_vmax(surfaces)
    plot_contours([surfaces[k]["2d"] for k in order], metric="train_loss", kind="filled",
                  labels=labels, vmax=vmax, log=True, levels=24,
                  title="Training loss around each minimum (log scale)",
                  out=files["contours_2d"])
    plot_density([curvature[k]["density"] for k in order], labels=labels,
                 title="Hessian spectral density", out=files["spectrum"])
    plot_history([histories[k]["epochs"] for k in order], labels=labels,
                 out=files["training"])
    if config.render_3d:
        try:
            from .plot3d import render_surface

            files["surface_3d"] = figs / "surface_3d.png"
            render_surface([surfaces[k]["2d"] for k in order], files["surface_3d"],
                           metric="train_loss", labels=labels, zmax=vmax, log=True,
                           size=(700, 560))
        except LandscapeError as exc:  # rendering is optional; the numbers are not
            files.pop("surface_3d", None)
            say(f"    3-D figure skipped: {exc}")
    return files


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
                    zmax=_plane_vmax(surfaces), log=True,
                    title="Training loss around each minimum")
    except LandscapeError as exc:
        say(f"    interactive 3-D scene skipped: {exc}")
        return {}
    say(f"    interactive 3-D scene: {path.relative_to(out)} "
        f"({time.perf_counter() - start:.1f} s)")
    return {"surface_3d": path}


def _plane_vmax(surfaces) -> float:
    """A shared clip for the 2-D figures: the small-batch plane's largest finite loss, so the
    flat basin fills the colour range and the sharp one saturates where it leaves it."""
    values = np.concatenate([np.ravel(s["2d"].metrics["train_loss"]) for s in surfaces.values()])
    values = values[np.isfinite(values)]
    if not values.size:
        return 10.0
    small = surfaces["small_batch"]["2d"].metrics["train_loss"]
    small = small[np.isfinite(small)]
    top = float(np.max(small)) if small.size else float(np.max(values))
    return float(min(max(top, 1e-3), 10.0))
