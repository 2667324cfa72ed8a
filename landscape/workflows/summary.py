"""The summary of a comparison: the measured records of N minima as the plain numbers of
``summary.json``.

``summarize`` evaluates each model's training and test metrics and gathers its curvature,
sharpness and basin shape, the ratios to the first model, the interpolation barrier, the
setup and provenance; ``vw_summary`` does the same for the V-versus-W section. Values JSON
cannot hold (NaN, inf) become None. Nothing here writes a file or draws.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

from ..util import provenance
from ..connect import path_summary
from ..data import DataBundle
from ..losses import loss_function
from ..models import count_parameters
from ..params import gradient_norms, parameter_norms
from ..shape import surface_shape
from ..train import evaluate_split
from .caveats import anchor_unresolved, basin_caveats, basin_note, grid_misses, nan_caveats
from .config import CompareConfig
from .inputs import Minimum
from .widths import refined_shape

__all__ = ["summarize", "vw_summary"]


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


def summarize(config: CompareConfig, bundle: DataBundle, minima: list[Minimum], curvature,
              sharp, interp, surfaces, eigen, *, widths=None) -> dict[str, Any]:
    """The content of ``summary.json`` before figures and timings: per model its training,
    metrics, curvature, sharpness and basin shape; ratios to the first model; the
    interpolation and its barrier; the eigen-slice checks; the setup and provenance.

    Args:
        config, bundle, minima: as ``measure`` was given them.
        curvature, sharp, interp, surfaces, eigen: the measurements' results (name -> record
            or surfaces; ``interp`` the interpolation surface).

    Returns:
        The summary.
    """
    loss_fn = loss_function(minima[0].loss)
    (xtr, ytr), (xte, yte) = bundle.train, bundle.test
    models, caveats = {}, {"models": {}, "steps": {}}
    for m in minima:
        eig = curvature[m.name]["eigenvalues"]
        first_eps = sharp[m.name]["epsilon"][0]
        adaptive = sharp[m.name]["adaptive"][0] if sharp[m.name]["adaptive"] else None
        found = (widths or {}).get(m.name) or {}
        width1d, width2d = (found.get(k) or {"method": "grid"} for k in ("1d", "2d"))
        shape1d = refined_shape(_shape(surfaces[m.name]["1d"], config.rise), width1d,
                                config.rise)
        first2d = _shape(surfaces[m.name]["2d"], config.rise)
        shape2d = refined_shape(first2d, width2d, config.rise)
        train_loss, train_acc = evaluate_split(m.model, xtr, ytr, loss_fn)
        test_loss, test_acc = evaluate_split(m.model, xte, yte, loss_fn)
        norms = parameter_norms(m.model)
        grads = gradient_norms(m.model, xtr, ytr, loss_fn)
        caveats["models"][m.name] = caveats["steps"][f"surfaces_{m.name}"] = _surface_caveats(
            m.label, surfaces[m.name], shape1d, shape2d, first2d)
        models[m.name] = {
            "label": m.label, "checkpoint": str(m.path) if m.path else None,
            **_training(m, len(ytr)),
            "train_loss": train_loss, "train_accuracy": train_acc,
            "test_loss": test_loss, "test_accuracy": test_acc,
            "generalization_gap": train_acc - test_acc,
            "top_eigenvalue": max(eig["top"]),
            "top_eigenvalues": sorted(eig["top"], reverse=True),
            "bottom_eigenvalue": eig["bottom"][0] if eig["bottom"] else None,
            "eigen_residuals": eig["residuals"],
            "trace": curvature[m.name]["trace"]["estimate"],
            "trace_stderr": curvature[m.name]["trace"]["stderr"],
            "sharpness": first_eps["value"],
            "sharpness_eps": first_eps["eps"],
            "sharpness_all": {f"eps={e['eps']:g}": e["value"]
                              for e in sharp[m.name]["epsilon"]},
            "adaptive_sharpness": adaptive["value"] if adaptive else None,
            "average_sharpness": (sharp[m.name]["average"] or {}).get("mean"),
            **_sharpness_radii(adaptive, sharp[m.name]["average"], count_parameters(m.model)),
            "basin_label_1d": shape1d["label"], "basin_label_2d": shape2d["label"],
            "basins_2d": shape2d["n_basins"],
            "basin_width_1d": _finite(shape1d["width"]),
            **_width_method("basin_width_1d", width1d, shape1d),
            **_width_method("basin_width_2d", width2d, shape2d),
            "basin_width_2d": _finite(shape2d["width"]),
            "curvature_1d": shape1d["curvature"][0],
            "surface_min_train_loss": _finite(surfaces[m.name]["2d"].summary("train_loss")["min"]),
            "basin_width_1d_note": basin_note(shape1d),
            "basin_width_2d_note": basin_note(shape2d),
            "basins_2d_resolved": first2d["width_resolved"] and not first2d["min_on_edge"],
            "parameter_norm": norms.total, "largest_layer": norms.largest,
            "largest_layer_norm": norms.layers[norms.largest],
            "gradient_norm": grads.total, "gradient_norm_relative": grads.relative,
            "descent_bound": _descent_bound(grads.total, max(eig["top"])),
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
        "warnings": caveats,
    }


def _width_method(key: str, record: dict[str, Any], shape: dict[str, Any]) -> dict[str, Any]:
    """How a width (``key``) was measured: ``"grid"`` (its surface resolves it) or
    ``"refined"`` (lines refined around the model: their count of refinements and the first
    grid's width), with the step of the grid it was read on."""
    out = {f"{key}_method": record.get("method", "grid"),
           f"{key}_step": max(shape["grid_steps"]) if shape["grid_steps"] else None}
    if out[f"{key}_method"] == "refined":
        out.update({f"{key}_rounds": record["rounds"],
                    f"{key}_first_grid": _finite(record["coarse_width"])})
    return out


def _descent_bound(gradient: float, top: float) -> float | None:
    """``|g|^2 / (2 lambda_max)``: by the descent lemma, one gradient step of size
    ``1 / lambda_max`` lowers the loss by at least this much where ``lambda_max`` bounds the
    curvature along the step (None without positive curvature)."""
    return gradient ** 2 / (2 * top) if top > 0 and math.isfinite(top) else None


def _sharpness_radii(adaptive, average, n_params: int) -> dict[str, Any]:
    """The radii the two adaptive sharpness measures reach, in the adapted norm
    ``|T^-1 delta|_2``: the worst case searches the ball of radius ``rho``; the average case's
    Gaussian noise (relative s.d. ``rho`` per weight) has norm about ``rho sqrt(d)``."""
    rho_avg = (average or {}).get("rho")
    return {"adaptive_sharpness_radius": adaptive["rho"] if adaptive else None,
            "average_sharpness_rho": rho_avg,
            "average_sharpness_radius": rho_avg * math.sqrt(n_params) if rho_avg else None}


def _surface_caveats(label: str, surfaces, shape1d: dict[str, Any], shape2d: dict[str, Any],
                     first2d: dict[str, Any]) -> list[str]:
    """What a model's 1-D and 2-D surfaces know about their own reliability (``first2d``: the
    2-D grid's own shape, on which basins are counted)."""
    count = [] if first2d["width_resolved"] or not shape2d["width_resolved"] else [
        f"{label}: 2-D basin count: the plane's grid (step {max(first2d['grid_steps']):.3g}) "
        f"does not resolve the basin (width {shape2d['width']:.3g} on refined lines): the "
        "basins counted on it mean little"]
    return (basin_caveats(shape1d, f"{label}: 1-D basin")
            + basin_caveats(shape2d, f"{label}: 2-D basin") + count
            + nan_caveats(surfaces["1d"].metrics["train_loss"], f"{label}: 1-D surface")
            + nan_caveats(surfaces["2d"].metrics["train_loss"], f"{label}: 2-D surface"))


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
                "resolved": shape.width_resolved and not shape.min_on_edge,
                "minima": [{"at": list(at), "train_loss": v} for at, v, _ in shape.minima],
                "barriers": [{"at": list(at), "saddle": saddle,
                              "height": saddle - next(v for a, v, _ in shape.minima if a == at)}
                             for at, saddle in shape.barriers]}

    v = shape_of(v_plane)
    result: dict[str, Any] = {
        "v": {"surface": f"surfaces/{v_minimum.name}_2d.h5", "around": v_minimum.label,
              "label": v["label"], "basins": v["basins"], "rule": v["rule"],
              "resolved": v["resolved"]}}
    if "plane" in vw:
        w_shape = shape_of(vw["plane"])
        result["w_plane"] = {"surface": "surfaces/w_plane.h5", "through": vw["names"][:3],
                             **w_shape, **_plane_caveats(vw["plane"], config.rise,
                                                        w_shape["minima"])}
        if "anchored_basins" in result["w_plane"]:
            result["w_plane"].update(_anchored_only(vw["plane"], w_shape))
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


def anchored_minima(plane, minima: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The counted grid minima at the plane's models (its ``anchors``): for each model, the
    nearest counted minimum within one grid step of it on each axis (the model's own grid
    point or a neighbour: a model trained to a loss floor sits in its basin, not always at
    the grid's lowest point of it). Returned when every model has one of its own (each
    sits in a basin of its own on the grid); else None."""
    anchors = getattr(plane, "anchors", None)
    if not anchors or "coords" not in anchors or not minima:
        return None
    coords = np.atleast_2d(np.asarray(anchors["coords"], dtype=float))
    steps = np.array([float(np.max(np.diff(a))) for a in (plane.x, plane.y)])
    at = np.array([m["at"] for m in minima], dtype=float)
    chosen: list[int] = []
    for c in coords:
        near = np.flatnonzero(np.all(np.abs(at - c) <= steps * (1 + 1e-9), axis=1))
        if near.size == 0:
            return None
        chosen.append(int(near[np.argmin(np.linalg.norm((at[near] - c) / steps, axis=1))]))
    return [minima[i] for i in chosen] if len(set(chosen)) == len(coords) else None


def _anchored_only(plane, shape: dict[str, Any]) -> dict[str, Any]:
    """The plane's shape restricted to the basins at its models: their count, minima and
    barriers (``barriers_upper_bounds``), labelled W when there are two or more."""
    on = anchored_minima(plane, shape["minima"]) or []
    at = [m["at"] for m in on]
    return {"basins": len(on), "label": "W" if len(on) >= 2 else shape["label"],
            "minima": on, "barriers": [b for b in shape["barriers"] if b["at"] in at],
            "barriers_upper_bounds": True}


def _plane_caveats(plane, rise: float, minima: list[dict[str, Any]] | None = None
                   ) -> dict[str, Any]:
    """``missed`` (models no grid point lies on), ``unresolved`` (models whose basin on the
    plane spans fewer than two grid steps) and ``warnings`` of the plane through three
    minima: a basin count on a grid that misses the minima may be an artifact, so it is not
    counted (``resolved`` False). On a grid through the models that does not resolve their
    basins, only the basins at the models stand, and only when each model is a counted
    minimum of its own (``anchored_basins``; their barriers are upper bounds: a pass
    narrower than a grid step is missed); otherwise nothing is counted."""
    missed = grid_misses(plane)
    unresolved = [] if missed else anchor_unresolved(plane, rise)
    anchored = anchored_minima(plane, minima or []) if unresolved else None
    warnings = nan_caveats(plane.metrics["train_loss"], "plane through three minima")
    if missed:
        warnings.insert(0, "plane through three minima: no grid point lies on "
                        + ", ".join(missed) + ": the grid does not sample their loss, so its "
                        "basin count and barriers may be artifacts of the grid")
    if unresolved:
        steps = ", ".join(f"{float(np.max(np.diff(a))):.3g}" for a in (plane.x, plane.y))
        warnings.insert(0, "plane through three minima: its grid (largest steps " + steps
                        + ") does not resolve the basin of " + ", ".join(unresolved)
                        + " (narrower than two grid steps there): "
                        + (f"only the {len(anchored)} basins at the models are counted, their "
                           "barriers are upper bounds on this grid" if anchored else
                           "its basin count and barriers are not counted"))
    out = {"missed": missed, "unresolved": unresolved, "warnings": warnings}
    if anchored:
        out["anchored_basins"] = len(anchored)
    return {**out, "resolved": False} if missed or unresolved else out
