"""The figures of a comparison: from measured surfaces and spectra to PNG files and an
interactive 3-D page under ``<out>/figures/``.

Figures that compare minima share their scales: a linear loss axis capped near the minima
with each basin's width at ``config.rise`` marked, one colour scale for all planes, one kernel
width for all spectral densities (``shared_densities``). The 3-D figures and the interactive
scene are optional: when they cannot be made, a line says why and the rest goes on. Nothing
here computes a loss; matplotlib and pyvista load inside the functions that draw.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import LandscapeError
from ..curvature import common_densities
from ..shape import surface_shape
from ..train import stability_threshold
from .config import CompareConfig
from .inputs import Minimum

__all__ = ["draw_figures", "vw_figures", "draw_scenes", "shared_densities", "barrier_figure"]


def draw_figures(config: CompareConfig, minima: list[Minimum], interp, surfaces, curvature,
                 out: Path, say: Callable[[str], None], eigen=None, widths=None
                 ) -> dict[str, Path]:
    """The comparison's figures. Where minima are compared, a linear loss axis capped near the
    minima (``plot2d.loss_cap``) with each basin's width at ``config.rise`` marked, so that a
    glance ranks them as the measured widths do; one kernel width for all spectra.

    Args:
        config, minima, out: as ``measure`` was given them.
        interp, surfaces, curvature, eigen: the measurements (``eigen`` may be empty).
        say: called with a line when an optional 3-D figure cannot be made.
        widths: ``refine_widths``' records: a width resolved on refined lines is the one the
            1-D and 2-D figures print.

    Returns:
        name -> path of each figure written under ``out/figures``.
    """
    from ..figures import (plot_contours, plot_density, plot_history, plot_lines,
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
               refined=_refined(widths, names, "1d"),
               title="Loss along a random direction", out=files["lines_1d"])
    plot_contours([surfaces[k]["2d"] for k in names], metric="train_loss", kind="filled",
                  labels=labels, rise=config.rise, levels=12,
                  refined=_refined(widths, names, "2d"),
                  title="Training loss on a random filter-normalized plane",
                  out=files["contours_2d"])
    densities, sigma = shared_densities([curvature[k]["density"] for k in names])
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


def _refined(widths, names: list[str], kind: str) -> list[float | None]:
    """Per model, its width resolved on refined lines (None: the grid's own stands)."""
    records = [((widths or {}).get(n) or {}).get(kind) or {} for n in names]
    return [r["width"] if r.get("method") == "refined" and r.get("resolved") else None
            for r in records]


def _render(files: dict[str, Path], figs: Path, name: str, say: Callable[[str], None],
            surfaces, **options: Any) -> None:
    """Render a 3-D figure into ``files[name]``; a line saying why when it cannot be made."""
    from ..figures import render_surface

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
    from ..figures import plot_contours, plot_paths

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
            _render(files, figs, "v_versus_w_3d", say, [v_plane, _unit_plane(vw["plane"])],
                    zmax=vmax, log=True, labels=["V: one minimum", "W: three minima"])
    if "curve" in vw:
        files["v_versus_w_paths"] = figs / "v_versus_w_paths.png"
        plot_paths([vw["curve"], vw["line"]],
                   title=f"Between {vw['names'][0]} and {vw['names'][1]}: curve vs straight "
                         "line", out=files["v_versus_w_paths"])
    return files


def _unit_plane(plane):
    """The plane with each axis rescaled to span 1 where its extents are far from square
    (one model far from the others): a 3-D scene shares one scale, so the far plane would be
    a wall and the V beside it a line. The axis labels give each axis's true unit."""
    from ..figures.contours import ASPECT_LIMIT

    spans = [float(np.ptp(np.asarray(a, float))) for a in (plane.x, plane.y)]
    if max(spans) <= ASPECT_LIMIT * min(spans):
        return plane
    prov = dict(plane.provenance or {})
    names = list(prov.get("axis_labels") or ["direction 1", "direction 2"])
    prov["axis_labels"] = [f"{n} (/{s:.3g})" for n, s in zip(names, spans)]
    anchors = dict(plane.anchors or {}) or None
    if anchors and "coords" in anchors:
        anchors["coords"] = np.asarray(anchors["coords"], float) / np.asarray(spans)
    return dataclasses.replace(plane, x=np.asarray(plane.x, float) / spans[0],
                               y=np.asarray(plane.y, float) / spans[1], provenance=prov,
                               anchors=anchors)


def barrier_figure(barriers: dict[str, Any], out: Path) -> dict[str, Path]:
    """The barrier matrix as heat maps (``summary["barriers"]``), minima ordered by basin."""
    from ..figures import plot_barrier_matrix

    path = out / "figures" / "barriers.png"
    n = len(barriers["labels"])
    plot_barrier_matrix(barriers, out=path,
                        title=f"Straight-line barriers between {n} minima "
                              f"({barriers['n_basins']} basin"
                              f"{'s' if barriers['n_basins'] != 1 else ''})")
    return {"barriers": path}


def shared_densities(spectra: list[dict[str, Any]]) -> tuple[list[tuple], float]:
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


def draw_scenes(config: CompareConfig, minima: list[Minimum], surfaces, out: Path,
                say: Callable[[str], None]) -> dict[str, Path]:
    """The minima's planes as one interactive 3-D page (vtk.js, opens offline), on the
    scale of the 3-D figure; skipped, with a line saying why, when it cannot be made."""
    if not config.render_3d:
        return {}
    from ..figures import export_html, web_export_missing

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
