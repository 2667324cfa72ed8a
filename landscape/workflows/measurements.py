"""The measurements of N minima: every step of a comparison, each keyed and reused.

``measure`` runs, in order: the interpolation from the first minimum to the second; the 1-D
and 2-D filter-normalized surfaces around each (one direction seed for all), each width
refined where its grid does not resolve it (``landscape.workflows.widths``); the Hessian
eigenvalues, trace and spectral density, and the GGN's top eigenvalue; the sharpness; the
slice along each minimum's top Hessian eigenvector; with three minima or more, the
straight-line barrier between every pair (the barrier matrix, minima grouped into basins);
and, with three minima or a curve to train, the V-versus-W section (the plane through the first three, a Bezier curve between the first two). Each step writes its
outputs under the output folder (each minimum's own under ``models/<name>/``, the shared
ones under ``surfaces/`` and ``curves/``) and is recorded in the ``Steps`` record with a key
of the weights, the data and its settings and the hashes of its outputs, so that a rerun
loads what is current (see ``landscape.workflows.steps``). It then summarizes and draws the
results.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..barriers import matrix_from_paths, path_values, straight_line
from ..util import provenance, write_json
from ..connect import ConnectOptions, connect
from ..data import DataBundle
from ..directions import (hessian_directions, interpolation_direction, random_directions,
                          save_directions)
from ..evaluate import METRICS
from ..curvature import (SPECTRUM_FORMAT_VERSION, HessianOptions, directional_curvature,
                       hessian_density, hessian_eigenvalues, hessian_trace, spectrum_record)
from ..params import flatten
from ..planes import plane_through
from ..sharpness import measure_sharpness
from ..store import load_surface, save_surface
from ..surface import SurfaceOptions, compute_surface
from .caveats import collect, warning_lines
from .config import CompareConfig
from .draw import barrier_figure, draw_figures, draw_scenes, vw_figures
from .inputs import Minimum
from .steps import Clock, Stages, Steps, read_record, step_key
from .summary import summarize, vw_summary
from .widths import refine_widths

__all__ = ["measure", "has_v_versus_w", "v_versus_w", "model_folder", "EIGEN_STEP"]


def model_folder(out: Path, minimum: Minimum) -> Path:
    """The folder of one minimum's own outputs, ``out/models/<name>/``: every per-model file
    has a fixed name inside it, so no label can name another model's (or a shared) file."""
    return out / "models" / minimum.name


def measure(config: CompareConfig, bundle: DataBundle, minima: list[Minimum], out: Path,
            steps: Steps, clock: Clock, say: Stages, progress: bool,
            vw_minima: list[Minimum] | None = None
            ) -> tuple[dict[str, Any], dict[str, Path], dict[str, Path]]:
    """Every measurement of ``compare``, then its figures.

    Args:
        config: what to measure.
        bundle: the data.
        minima: the minima (two or more; the first is the reference of ratios).
        out: the output folder.
        steps, clock, say: the step record, step timings and progress lines of the run.
        progress: show progress bars of the long steps.
        vw_minima: the minima of the V-versus-W section (default: ``minima``): the plane
            through the first three, the curve between the first two; the V is the first
            of ``minima``'s plane.

    Returns:
        ``(summary, figures, scenes)``: the summary (``summarize``, with ``v_versus_w``) and
        name -> path of the figures and interactive pages.
    """
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
    with clock("widths"):
        widths = refine_widths(**ctx, surfaces=surfaces, folder=model_folder)
    say.step("Hessian eigenvalues, trace and spectral density"
             + (" and the GGN's top eigenvalue" if config.ggn_top else ""))
    with clock("curvature"):
        curvature = _curvature(**ctx)
        matrices = _matrices(**ctx)
    with clock("ggn_top"):
        ggn = _ggn_top(**ctx) if config.ggn_top else {}
    say.step("sharpness and slices along the top Hessian eigenvector")
    with clock("sharpness"):
        sharp = _sharpness(**ctx)
    with clock("eigen_slices"):
        eigen = _eigen_slices(**ctx)
    barriers = None
    if len(minima) >= 3:
        say.step(f"barriers between every pair of the {len(minima)} minima")
        with clock("barriers"):
            barriers = _barriers(**ctx)
    vw = None
    if has_v_versus_w(config, vw_minima):
        labels = [m.label for m in vw_minima]
        say.step("V versus W: " + " and ".join(
            ([f"the plane through {', '.join(labels[:3])}"] if len(labels) >= 3 else [])
            + ([f"a curve between {labels[0]} and {labels[1]}"] if config.curve_epochs else [])))
        with clock("v_versus_w"):
            vw = v_versus_w(config, bundle, vw_minima, out, steps, progress, loss)
    summary = summarize(config, bundle, minima, curvature, sharp, interp, surfaces, eigen,
                        widths=widths)
    v_plane = surfaces[minima[0].name]["2d"]
    if vw is not None:
        summary["v_versus_w"] = vw_summary(config, vw, v_plane, minima[0])
    if barriers is not None:
        summary["barriers"] = barriers
    for name, record in matrices.items():
        summary["models"][name]["curvatures"] = record
    _add_ggn_top(summary, ggn, minima)
    summary["warnings"] = collect(summary)
    for line in warning_lines(summary["warnings"]):
        say(f"warning: {line}")
    say.step("figures and report")
    with clock("figures"):
        figures = draw_figures(config, minima, interp, surfaces, curvature, out, say, eigen,
                               widths=widths)
        if vw is not None:
            figures.update(vw_figures(config, vw, v_plane, minima[0], out, say))
        if barriers is not None:
            figures.update(barrier_figure(barriers, out))
        scenes = draw_scenes(config, minima, surfaces, out, say)
    return summary, figures, scenes


def has_v_versus_w(config: CompareConfig, minima: Sequence[Minimum]) -> bool:
    """Whether ``measure`` makes a V-versus-W section of these minima (a plane through three,
    or a trained curve between two)."""
    return len(minima) >= 3 or (len(minima) >= 2 and config.curve_epochs > 0)


def _interpolation(config, bundle, minima, out, steps, progress, loss):
    """The surface on the line from the first minimum (alpha 0) to the second (alpha 1)."""
    path = out / "surfaces" / "interpolation.h5"
    a, b = minima[0], minima[1]
    key = step_key(a.key, b.key, bundle.spec, loss, config.interp_range, config.interp_points)

    def compute():
        anchors = {"coords": np.array([[0.0], [1.0]]), "labels": np.array([a.label, b.label])}
        return compute_surface(a.model, bundle, [interpolation_direction(a.model, b.model)],
                               x=np.linspace(*config.interp_range, config.interp_points),
                               options=SurfaceOptions(metrics=METRICS, progress=progress,
                                                      device=config.device, loss=loss),
                               out=path, force=True, anchors=anchors,
                               provenance=provenance(step="interpolation"))
    return steps.run("interpolation", key, [path], lambda: load_surface(path), compute)


def _barriers(config, bundle, minima, out, steps, progress, loss):
    """The straight line between every pair (alpha in [0, 1]), each a step of its own, and
    the barrier matrix with the minima grouped into basins (``landscape.barriers``)."""
    paths = {}
    for i, a in enumerate(minima):
        for j in range(i + 1, len(minima)):
            b = minima[j]
            path = out / "surfaces" / f"line_{a.name}_{b.name}.h5"
            key = step_key(a.key, b.key, bundle.spec, loss, config.barrier_points)

            def compute(a=a, b=b, path=path):
                return straight_line(a.model, b.model, bundle, points=config.barrier_points,
                                     options=SurfaceOptions(metrics=METRICS, progress=progress,
                                                            device=config.device, loss=loss),
                                     out=path, names=(a.label, b.label))
            paths[i, j] = path_values(steps.run(f"line_{a.name}_{b.name}", key, [path],
                                                lambda path=path: load_surface(path), compute))
    matrix = matrix_from_paths(paths, [m.label for m in minima]).to_dict()
    return {**matrix, "points": config.barrier_points,
            "surfaces": [f"surfaces/line_{minima[i].name}_{minima[j].name}.h5"
                         for i, j in sorted(paths)]}


def _surfaces(config, bundle, minima, out, steps, progress, loss):
    """1-D and 2-D surfaces around each model: the same direction seed for all, each
    direction filter-normalized to its own model's weights."""

    result: dict[str, dict[str, Any]] = {}
    line = np.linspace(*config.line_range, config.line_points)
    plane = np.linspace(*config.plane_range, config.plane_points)
    for m in minima:
        own = model_folder(out, m)
        dpath = own / "directions.h5"
        paths = {"1d": own / "surface_1d.h5", "2d": own / "surface_2d.h5"}
        key = step_key(m.key, bundle.spec, loss, config.seed, config.line_range,
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
    """Per model: top and bottom Hessian eigenvalues, the trace and the spectral density."""

    def measure_one(model) -> dict[str, Any]:
        common = dict(seed=config.seed, options=HessianOptions(device=config.device,
                                                               progress=progress, loss=loss))
        # The bottom end's default tolerance (1e-5 of the spectrum's width) brackets the
        # smallest eigenvalue tightly enough to tell a negative one from zero.
        ends = (dict(which="both", k_smallest=1) if config.bottom_eigenvalue
                else dict(which="largest"))
        eig = hessian_eigenvalues(model, bundle.train, k=config.top_k, **ends, **common)
        trace = hessian_trace(model, bundle.train, n_products=config.trace_products, **common)
        density = hessian_density(model, bundle.train, n_probes=config.density_probes,
                                  n_steps=config.density_steps, **common)
        return spectrum_record(eigen=eig, n_bottom=int(config.bottom_eigenvalue), trace=trace,
                               density=density,
                               split="train", mode=eig.mode)

    settings = (bundle.spec, loss, config.top_k, config.trace_products, config.density_probes,
                config.density_steps, config.seed, config.bottom_eigenvalue,
                SPECTRUM_FORMAT_VERSION)
    return _per_model_json("curvature", minima, out, steps, settings, measure_one)


def _matrices(config, bundle, minima, out, steps, progress, loss):
    """Per model, for each of ``config.curvatures`` (GGN, Fisher, empirical Fisher): the
    top eigenvalue and the trace (none asked: an empty dict)."""
    if not config.curvatures:
        return {}

    def measure_one(model) -> dict[str, Any]:
        record = {}
        for matrix in config.curvatures:
            options = HessianOptions(device=config.device, progress=progress, loss=loss,
                                     curvature=matrix)
            eig = hessian_eigenvalues(model, bundle.train, k=1, seed=config.seed,
                                      options=options)
            trace = hessian_trace(model, bundle.train, n_products=config.trace_products,
                                  seed=config.seed, options=options)
            record[matrix] = {"top_eigenvalue": float(eig.values[-1]),
                              "trace": trace.estimate, "trace_stderr": trace.stderr}
        return record

    settings = (bundle.spec, loss, tuple(config.curvatures), config.trace_products,
                config.seed)
    return _per_model_json("curvature_matrices", minima, out, steps, settings, measure_one)


def _ggn_top(config, bundle, minima, out, steps, progress, loss):
    """Per model: the GGN's top eigenvalue, beside the Hessian's: eigsh from a random start
    (``config.seed``) at the Hessian's tolerance (``hessian_eigenvalues``' default, 1e-6 of
    the value), one eigenvalue only (on the demo's minima about 20 products, against some
    300 of the Hessian's eigenvalues, trace and density)."""

    def measure_one(model) -> dict[str, Any]:
        eig = hessian_eigenvalues(model, bundle.train, k=1, seed=config.seed, options=(
            HessianOptions(device=config.device, progress=progress, loss=loss,
                           curvature="ggn")))
        return {"top_eigenvalue": float(eig.values[-1]), "residual": float(eig.residuals[-1]),
                "converged": eig.converged, "n_products": eig.n_products,
                "seconds": eig.seconds}

    settings = (bundle.spec, loss, config.seed, SPECTRUM_FORMAT_VERSION)
    return _per_model_json("ggn_top", minima, out, steps, settings, measure_one)


def _add_ggn_top(summary: dict[str, Any], ggn: dict[str, dict[str, Any]],
                 minima: list[Minimum]) -> None:
    """Each model's GGN top eigenvalue (and its residual) into the summary, with a caveat
    where the solver stopped before its tolerance."""
    for m in minima:
        record = ggn.get(m.name)
        if record is None:
            continue
        entry = summary["models"][m.name]
        entry["ggn_top_eigenvalue"] = record["top_eigenvalue"]
        entry["ggn_top_residual"] = record["residual"]
        if not record["converged"]:
            line = (f"{m.label}: the GGN's top eigenvalue did not converge (residual "
                    f"{record['residual']:.2g}): it is a lower bound")
            summary["warnings"]["models"].setdefault(m.name, []).append(line)


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
        own = model_folder(out, m)
        dpath = own / "hessian_directions.h5"
        paths = {"surface": own / "eigen_1d.h5", "check": own / "eigen_slice.json"}
        key = step_key(m.key, bundle.spec, loss, config.seed, config.eigen_range,
                       config.eigen_points, EIGEN_STEP)

        def load(paths=paths):
            return {"surface": load_surface(paths["surface"]),
                    "check": read_record(paths["check"])}

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
    """Per model: Keskar, adaptive and average-case sharpness."""

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
    """Run ``measure_one(model)`` for each model, or reuse ``models/<name>/<step>.json`` when
    the model and ``settings`` are unchanged."""
    result = {}
    for m in minima:
        path = model_folder(out, m) / f"{step}.json"

        def compute(m=m, path=path):
            record = measure_one(m.model)
            write_json(path, record)
            return record
        result[m.name] = steps.run(f"{step}_{m.name}", step_key(m.key, *settings), [path],
                                   lambda path=path: read_record(path), compute)
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
    """The surface on the plane through three minima (orthogonal axes, with a margin)."""
    path = out / "surfaces" / "w_plane.h5"
    names = [m.label for m in minima]
    key = step_key([m.key for m in minima], bundle.spec, loss, config.w_plane_points,
                   config.w_plane_margin, names, "grid through the minima, ends kept")

    def compute():
        # Orthogonal axes of equal length, grid points exactly on the three models: basins
        # counted there rest on their losses.
        return plane_through(
            [m.model for m in minima], bundle, labels=names, points=config.w_plane_points,
            margin=config.w_plane_margin, out=path,
            options=SurfaceOptions(metrics=METRICS, progress=progress, device=config.device,
                                   loss=loss),
            provenance=provenance(step="plane through three minima"))
    return steps.run("w_plane", key, [path], lambda: load_surface(path), compute)


def _w_curve(config, bundle, minima, out, steps, progress, loss):
    """A Bezier curve trained between two minima, and the straight line between them."""
    paths = [out / "surfaces" / "w_curve.h5", out / "surfaces" / "w_line.h5"]
    names = tuple(m.label for m in minima)
    key = step_key([m.key for m in minima], bundle.spec, loss, config.curve_epochs,
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
