"""The report of a comparison or study: ``summary.json``, ``report.md`` and a self-contained
``report.html``.

Its content: the title and setup, the table of quantities per model (with ratios to the
first), the findings in plain sentences, the figures with captions and interactive scenes,
the V-versus-W section and the provenance. Only formats numbers it is given; computes nothing
about models. The blocks are rendered by ``landscape.workflows.document``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..util import write_json
from ..params import SCALE_DEPENDENT
from .caveats import NORM_FACTOR, gradient_caveats
from .document import provenance_line, write_document

__all__ = ["table_header", "table_rows", "norm_rows", "caveat_items", "findings", "study_blocks",
           "v_versus_w_blocks", "v_versus_w_rows", "write_report", "SCENE_CAPTION",
           "barrier_sentence"]


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        return f"{value:.{digits}g}"
    return str(value)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _ratio(a: Any, b: Any) -> str:
    """``b / a`` to three significant digits (a 1,600-fold drop reads 0.000632x, not 0.00x)."""
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not a:
        return ""
    return f"{b / a:.3g}x"


def _models(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The compared models' entries, in order."""
    return [summary["models"][name] for name in summary["labels"]]


def table_header(summary: dict[str, Any]) -> tuple[str, ...]:
    """Header of ``table_rows``: quantity, one column per model, and with two models the
    ratio of the second to the first."""
    models = _models(summary)
    ratio = (f"{models[1]['label']} / {models[0]['label']}",) if len(models) == 2 else ()
    return ("quantity", *(m["label"] for m in models), *ratio)


def table_rows(summary: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows of the report's table (see ``table_header``); a ratio cell is empty where a ratio
    says nothing."""
    models = _models(summary)

    def row(name: str, cell, ratio_of=None) -> tuple[str, ...]:
        """``cell(model)`` per model; with two models, the ratio of ``ratio_of`` (an entry's
        key, or a function of the model entry) of the second to the first."""
        cells = [cell(m) for m in models]
        if len(models) != 2:
            return (name, *cells)
        value = (lambda m: m[ratio_of]) if isinstance(ratio_of, str) else ratio_of
        return (name, *cells, _ratio(*map(value, models)) if value else "")

    def batch(m):
        return _fmt(m["batch_size"]) + (" (full)" if m["full_batch"] else "")

    def epochs(m):
        if m["epochs"] is None:
            return "n/a"
        return f"{m['epochs']}" + (f" ({m['steps']:,})" if m["steps"] is not None else "")

    rows = [
        row("batch size", batch), row("epochs (steps)", epochs),
        row("train loss", lambda m: _fmt(m["train_loss"])),
        row("full-batch gradient norm (relative |g * theta|)", _gradient),
        row("train accuracy", lambda m: _pct(m["train_accuracy"])),
        row("test accuracy", lambda m: _pct(m["test_accuracy"])),
        row("generalization gap (train - test acc.)", lambda m: _pct(m["generalization_gap"])),
        row("top Hessian eigenvalue", lambda m: _fmt(m["top_eigenvalue"]), "top_eigenvalue"),
        *([row("top GGN eigenvalue", lambda m: _fmt(m.get("ggn_top_eigenvalue")),
               lambda m: m.get("ggn_top_eigenvalue"))]
          if any(m.get("ggn_top_eigenvalue") is not None for m in models) else []),
        row("top eigenvalues", lambda m: ", ".join(_fmt(v, 3) for v in m["top_eigenvalues"])),
        *([row("most negative eigenvalue", lambda m: _fmt(m["bottom_eigenvalue"]))]
          if any(m.get("bottom_eigenvalue") is not None for m in models) else []),
        row("Hessian trace (+- s.e.)",
            lambda m: f"{_fmt(m['trace'])} +- {_fmt(m['trace_stderr'], 2)}", "trace"),
    ]
    for eps in models[0]["sharpness_all"]:
        value = lambda m, eps=eps: m["sharpness_all"][eps]  # noqa: E731
        rows.append(row(f"Keskar sharpness ({eps})", lambda m, v=value: _fmt(v(m)), value))
    rows += [
        row(_adaptive_label(models[0], "worst"), lambda m: _fmt(m["adaptive_sharpness"]),
            "adaptive_sharpness"),
        row(_adaptive_label(models[0], "average"), lambda m: _fmt(m["average_sharpness"])),
        row("basin shape 1-D / 2-D",
            lambda m: f"{m['basin_label_1d']} / {_unless(m, 'basins_2d', m['basin_label_2d'])}"),
        row("basins in the 2-D plane", lambda m: _unless(m, "basins_2d", _fmt(m["basins_2d"]))),
        row("basin width 1-D / 2-D",
            lambda m: f"{_noted(m, 'basin_width_1d')} / {_noted(m, 'basin_width_2d')}"),
        row("curvature at the centre (1-D)", lambda m: _fmt(m["curvature_1d"]), "curvature_1d"),
    ]
    for matrix in models[0].get("curvatures") or {}:
        cell = lambda m, k: (m.get("curvatures") or {}).get(matrix, {}).get(k)  # noqa: E731
        rows.append(row(f"{MATRIX_NAMES.get(matrix, matrix)}: top eigenvalue / trace",
                        lambda m, c=cell: f"{_fmt(c(m, 'top_eigenvalue'))} / "
                                          f"{_fmt(c(m, 'trace'))}",
                        lambda m, c=cell: c(m, "top_eigenvalue")))
    return rows + norm_rows(summary)


def _gradient(m: dict[str, Any]) -> str:
    """The gradient norms' cell, marked (!) where the model is not at a stationary point."""
    if m.get("gradient_norm") is None:
        return "n/a"
    mark = " (!)" if gradient_caveats(m) else ""
    return f"{_fmt(m['gradient_norm'], 3)} ({_fmt(m['gradient_norm_relative'], 3)}){mark}"


def _noted(m: dict[str, Any], key: str) -> str:
    """A basin width with its caveat tag (``unresolved``, ``wider than the grid``), and
    ``refined`` where grids refined around the model resolved it."""
    note = m.get(f"{key}_note")
    if note == "wider than the grid":
        return "> grid (!)"
    refined = m.get(f"{key}_method") == "refined" and not note
    return _fmt(m[key], 3) + (f" ({note} !)" if note else " (refined)" if refined else "")


def _unless(m: dict[str, Any], key: str, text: str) -> str:
    """``text``, or "not resolved" where the grid cannot support the count."""
    return text if m.get(f"{key}_resolved", True) else "not resolved (!)"


def _adaptive_label(m: dict[str, Any], case: str) -> str:
    """The adaptive sharpness rows' names, each with the radius it reaches (adapted norm):
    the average case's noise reaches much further than the worst case's ball."""
    if case == "worst":
        radius = m.get("adaptive_sharpness_radius")
        return ("adaptive sharpness, worst case in the adapted l2 ball"
                + (f" of radius {_fmt(radius, 3)}" if radius is not None else ""))
    radius, rho = m.get("average_sharpness_radius"), m.get("average_sharpness_rho")
    if radius is None:
        return "adaptive sharpness, average over Gaussian noise"
    return (f"adaptive sharpness, average over Gaussian noise of relative s.d. {_fmt(rho, 3)} "
            f"(adapted radius about {_fmt(radius, 3)})")


def norm_rows(summary: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows of each model's parameter norm (total; largest layer), a mark (!) where norms
    differ by more than ``NORM_FACTOR`` (scale-dependent measures are then not comparable)."""
    models = _models(summary)
    if any(m.get("parameter_norm") is None for m in models):
        return []
    flagged = _norm_marked(summary)
    pad = ("",) if len(models) == 2 else ()
    return [("parameter norm (total)", *(_fmt(m["parameter_norm"], 4)
                                          + (" (!)" if name in flagged else "")
                                          for name, m in zip(summary["labels"], models)), *pad),
            ("largest layer (norm)", *(f"{m['largest_layer']} ({_fmt(m['largest_layer_norm'], 4)})"
                                       for m in models), *pad)]


def _norm_marked(summary: dict[str, Any]) -> set[str]:
    """Models whose caveats name their parameter norm."""
    per_model = (summary.get("warnings") or {}).get("models", {})
    return {name for name, lines in per_model.items()
            if any("parameter norm" in line for line in lines)}


def caveat_items(summary: dict[str, Any]) -> list[str]:
    """The report's caveats: every warning of ``summary["warnings"]``, models first, then
    the steps' that no model already says."""
    warnings = summary.get("warnings") or {}
    lines = [line for name in summary["labels"]
             for line in warnings.get("models", {}).get(name, [])]
    lines += [line for step in warnings.get("steps", {}).values() for line in step]
    return list(dict.fromkeys(lines))


MATRIX_NAMES = {"ggn": "GGN", "fisher": "Fisher", "empirical-fisher": "empirical Fisher"}
"""Names of the curvature matrices in the report's rows."""


def _ranked(models: list[dict[str, Any]], key: str, fmt=_fmt) -> str:
    """``a (v) > b (v) > ...`` by ``key``, highest first (missing values last)."""
    order = sorted(models, key=lambda m: (m[key] is None, -(m[key] or 0.0)))
    return " > ".join(f"{m['label']} ({fmt(m[key])})" for m in order)


def findings(summary: dict[str, Any]) -> list[str]:
    """Plain sentences on what the numbers show; for the study, whether the usual claims (a
    large batch finds a sharper minimum that generalizes worse) hold, and where they do not."""
    models = _models(summary)
    out = []
    if len(models) == 2:
        a, b = models
        better, worse = (a, b) if a["test_accuracy"] >= b["test_accuracy"] else (b, a)
        diff = 100 * (better["test_accuracy"] - worse["test_accuracy"])
        out.append(f"The {better['label']} model tests {diff:.1f} points better than the "
                   f"{worse['label']} model ({_pct(better['test_accuracy'])} vs "
                   f"{_pct(worse['test_accuracy'])}), with training accuracy "
                   f"{_pct(better['train_accuracy'])} vs {_pct(worse['train_accuracy'])}.")
    else:
        out.append("Test accuracy: " + _ranked(models, "test_accuracy", _pct) + ".")
    out.append(_sharpest_finding(models))
    eps = models[0]["sharpness_eps"]
    out.append(f"Keskar sharpness (eps={_fmt(eps)}): " + _ranked(models, "sharpness")
               + ". Raw eigenvalues and this sharpness change under reparametrizations that "
               "leave the function unchanged; the adaptive sharpness and the filter-normalized "
               "plots do not.")
    out += _basin_findings(summary, models)
    out += _scale_findings(summary, models)
    interp = summary["interpolation"]
    if interp["barrier"] is not None:
        barrier = interp["barrier"]
        out.append(f"On the straight line from {interp['between'][0]} to {interp['between'][1]}"
                   f" the training loss rises {_fmt(barrier, 3)} above the higher end "
                   f"({'a barrier separates them' if barrier > 1e-3 else 'no barrier'}).")
    checks = summary.get("checks")
    if checks:
        held = [name.replace("_", " ") for name, ok in checks.items() if ok]
        failed = [name.replace("_", " ") for name, ok in checks.items() if not ok]
        out.append("The usual claims, checked: "
                   + (f"hold: {'; '.join(held)}" if held else "none holds")
                   + (f"; do not hold here: {'; '.join(failed)}." if failed else "."))
    return out


def _basin_findings(summary: dict[str, Any], models: list[dict[str, Any]]) -> list[str]:
    """The basin widths and 2-D shapes as a finding only where every grid resolves them;
    otherwise which models' grids do not (a verdict on an artifact is no finding)."""
    unresolved = [m["label"] for m in models
                  if m["basin_width_1d"] is None or m.get("basin_width_1d_note")]
    if unresolved:
        return ["The 1-D basin widths are not compared: the grid does not resolve the basin of "
                + ", ".join(unresolved) + " (see the caveats)."]
    rise = summary["setup"]["config"]["rise"]
    shapes = [f"{m['basin_label_2d']} ({m['label']}, {m['basins_2d']} "
              f"basin{'s' if m['basins_2d'] != 1 else ''})"
              for m in models if m.get("basins_2d_resolved", True)]
    return [f"Along a filter-normalized direction the basin (loss within {rise} of the "
            "minimum) is " + ", ".join(f"{_fmt(m['basin_width_1d'], 3)} wide for "
                                       f"{m['label']}" for m in models)
            + ("; shapes in 2-D: " + ", ".join(shapes) if shapes else "") + "."]


def _sharpest_finding(models: list[dict[str, Any]]) -> str:
    """Which minimum is sharpest by the top eigenvalue and the trace, unless the parameter
    norms differ so much that these scale-dependent numbers cannot be ranked."""
    if _norms_apart(models):
        return ("The top Hessian eigenvalues and traces are not ranked: the parameter norms "
                f"differ by more than {NORM_FACTOR:g}x (see below), and both scale with them.")
    sharp = max(models, key=lambda m: m["top_eigenvalue"])
    flat = min(models, key=lambda m: m["top_eigenvalue"])
    return (f"The {sharp['label']} minimum is the sharpest by the top Hessian eigenvalue, "
            f"{sharp['top_eigenvalue'] / flat['top_eigenvalue']:.1f} times the "
            f"{flat['label']} one ({_fmt(sharp['top_eigenvalue'])} vs "
            f"{_fmt(flat['top_eigenvalue'])}); by the trace: "
            + _ranked(models, "trace", lambda v: _fmt(v, 3)) + ".")


def _norms_apart(models: list[dict[str, Any]]) -> bool:
    """Whether the models' parameter norms differ by more than ``NORM_FACTOR``."""
    norms = [m.get("parameter_norm") for m in models]
    return all(v is not None and v > 0 for v in norms) and max(norms) > NORM_FACTOR * min(norms)


def _scale_findings(summary: dict[str, Any], models: list[dict[str, Any]]) -> list[str]:
    """Which measures depend on the parameters' scale, and whether the norms allow comparing
    them."""
    norms = [m.get("parameter_norm") for m in models]
    if any(v is None or not v > 0 for v in norms):
        return []
    spread = max(norms) / min(norms)
    names = ", ".join(SCALE_DEPENDENT)
    if spread > NORM_FACTOR:
        return [f"Parameter norms differ {spread:.0f}-fold ("
                + ", ".join(f"{m['label']} {_fmt(m['parameter_norm'], 3)}" for m in models)
                + f"): the scale-dependent measures ({names}) are not comparable between "
                "these models (Dinh et al. 2017); compare the filter-normalized slices and "
                "the adaptive sharpness."]
    return [f"Parameter norms are within {spread:.1f}x of each other; the scale-dependent "
            f"measures ({names}) still change under rescalings that keep the function."]


SCENE_CAPTION = ("The same planes as an interactive 3-D scene: drag to rotate, scroll to zoom, "
                 "shift-drag to pan (vtk.js; the file opens offline in any browser).")


def _intro(summary: dict[str, Any]) -> tuple[str, str]:
    """Title and opening paragraph: the study's two runs, or the compared checkpoints."""
    setup, models = summary["setup"], _models(summary)
    data = (f"Dataset **{setup['dataset']}** ({setup['train_examples']:,} train / "
            f"{setup['test_examples']:,} test examples), model **{setup['model']}** "
            f"({setup['parameters']:,} parameters)")
    loss = setup.get("loss", "cross_entropy")
    common = (f"Curvature is measured on the full training loss ({loss})"
              f" with the model in {setup['hessian_mode']} mode; surfaces use filter-normalized "
              "random directions (bias and BatchNorm entries zeroed) drawn with the same seed "
              f"({setup['seed']}) for every model.")
    if summary.get("study"):
        sb, lb = models
        return ("Sharp versus flat minima: small batch vs large batch",
                f"{data}, the same initialization (seed {setup['seed']}) for both runs. Small "
                f"batch: {sb['optimizer']}, batch {sb['batch_size']}, lr {sb['lr']}, "
                f"{sb['epochs']} epochs. Large batch: {lb['optimizer']}, batch "
                f"{lb['batch_size']}{' (full)' if lb['full_batch'] else ''}, lr {lb['lr']}, "
                f"{lb['epochs']} epochs. Epoch budgets differ so that each run fits its "
                f"training set. {common}")

    def trained(m):
        if m["optimizer"] is None:
            return f"**{m['label']}** (`{m['checkpoint']}`; its training is not recorded)"
        return (f"**{m['label']}** (`{m['checkpoint']}`: {m['optimizer']}, batch "
                f"{m['batch_size']}{' (full)' if m['full_batch'] else ''}, lr {m['lr']}, "
                f"{m['epochs']} epochs)")
    return ("Comparing minima: " + ", ".join(m["label"] for m in models),
            f"{data}; {len(models)} minima: " + "; ".join(trained(m) for m in models) + ". "
            + common)


def study_blocks(summary: dict[str, Any], figures: dict[str, str],
                 scenes: dict[str, str] | None = None) -> list[tuple]:
    """The report as document blocks (see ``render_markdown``); each interactive scene
    follows the figure of the same name (or closes the figures)."""
    title, intro = _intro(summary)
    first = _models(summary)[0]["label"]
    a, b = summary["interpolation"]["between"]
    captions = {
        "interpolation": f"Loss (log axis: the barrier and the minima's depth) and accuracy on "
                         f"the line from {a} (alpha=0) to {b} (alpha=1).",
        "lines_1d": "Loss along one filter-normalized random direction around each minimum "
                    "(linear axis capped near the minima; bars: basin width at +rise).",
        "contours_2d": "Training loss on a filter-normalized random plane (shared colour scale "
                       "capped near the minima; dashed: basin edge at +rise).",
        "surface_3d": "The same planes in 3-D (shared height and colour scale, clipped near "
                      "the minima; red line, also on the floor map: each basin's edge at +rise).",
        "spectrum": "Hessian spectral density (stochastic Lanczos quadrature, one Gaussian "
                    "kernel for all).",
        "training": "Training and test curves.",
        "eigen_slices": "Loss along each model's own top Hessian eigenvector (unit norm): the "
                        "curvature that eigenvalues and sharpness measure, which random "
                        "directions rarely meet.",
        "sharpness": "Top Hessian eigenvalue during training, with each run's stability "
                     "threshold 2(1+beta)/lr.",
        "barriers": "Straight-line barrier between every pair of minima (the highest value on "
                    "the line minus the higher end), in training loss and in test error; "
                    "minima ordered by basin, each basin boxed.",
    }
    blocks: list[tuple] = [
        ("h1", title), ("p", intro), ("h2", "Results"),
        ("table", table_header(summary), table_rows(summary)),
        *_caveat_blocks(summary),
        ("h2", "What the numbers say"), ("ul", findings(summary)), ("h2", "Figures"),
    ]
    scenes = dict(scenes or {})
    for k, rel in figures.items():
        if k.startswith("v_versus_w"):
            continue  # drawn in their own section below
        blocks.append(("figure", captions.get(k, k), rel))
        if k in scenes:
            blocks.append(("scene", SCENE_CAPTION, scenes.pop(k)))
    blocks += [("scene", SCENE_CAPTION, rel) for rel in scenes.values()]
    if summary.get("v_versus_w"):
        blocks += v_versus_w_blocks(summary["v_versus_w"], figures, first)
    if summary.get("barriers"):
        blocks += [("h2", "Barriers between every pair"),
                   ("p", barrier_sentence(summary["barriers"]))]
    blocks += [("h2", "Provenance"), ("p", provenance_line(summary))]
    return blocks


def _caveat_blocks(summary: dict[str, Any]) -> list[tuple]:
    """The caveats right under the table whose cells they mark (!)."""
    items = caveat_items(summary)
    if not items:
        return []
    return [("p", "**Caveats** (cells marked (!) above; the numbers stand as measured, "
                  "read them with these):"), ("ul", items)]


def v_versus_w_blocks(vw: dict[str, Any], figures: dict[str, str],
                      v_label: str | None = None) -> list[tuple]:
    """The "V versus W" section: one minimum's plane against the plane through three minima
    (of the same network), and the straight line between two minima against their curve."""
    parts = []
    if vw.get("seed_runs"):
        run, runs = vw["seeds_run"], vw["seed_runs"]
        parts.append(f"The same network trained from {len(runs)} seeds ({', '.join(runs)}; "
                     f"batch {run['batch_size']}, lr {run['lr']}, {run['epochs']} epochs): "
                     "test accuracy " + ", ".join(_pct(r["test_accuracy"])
                                                  for r in runs.values()) + ".")
    counted = ("w_plane" in vw and not vw["w_plane"].get("missed")
               and (not vw["w_plane"].get("unresolved")
                    or bool(vw["w_plane"].get("anchored_basins"))))
    parts.append("A random plane around one minimum shows one basin (a V)"
                 + ("; the plane through three minima and the straight line between two show "
                    "several (a W)" if counted else "")
                 + (f", while a Bezier curve trained between the same two minima "
                    f"({vw['curve']['epochs']} epochs, endpoints fixed; Garipov et al. 2018) "
                    "stays low" if "curve" in vw else "") + ".")
    rule = (vw.get("w_plane") or vw["v"]).get("rule")
    if counted and vw["w_plane"].get("anchored_basins"):
        parts.append("The plane's grid does not resolve the basins of "
                     + ", ".join(vw["w_plane"]["unresolved"]) + " (narrower than two grid "
                     "steps), so only the basins at the models are counted and their barriers "
                     "are upper bounds (a pass narrower than a grid step would be missed).")
    if "w_plane" in vw and not counted:
        w = vw["w_plane"]
        parts.append("The plane through three minima is not counted: "
                     + (f"no grid point lies on {', '.join(w['missed'])}" if w.get("missed")
                        else "its grid does not resolve the basin of "
                        + ", ".join(w["unresolved"]))
                     + ", so its basins may be artifacts of the grid.")
    parts.append(f"A basin counts when {rule or 'its depth passes the threshold'} (its barrier "
                 "at least doubles the loss).")
    captions = {
        "v_versus_w_2d": "Training loss on a random plane around one minimum (left) and on the "
                         "plane through three minima (right), one log colour scale; circles: "
                         "the minima, star: the lowest point.",
        "v_versus_w_3d": "The same two planes in 3-D (shared height and colour scale).",
        "v_versus_w_paths": "Loss and accuracy from one minimum to another: the straight line "
                            "(a barrier) against the trained Bezier curve.",
    }
    blocks: list[tuple] = [("h2", "V versus W: one minimum against many"),
                           ("p", " ".join(parts)),
                           ("table", ("landscape", "shape", "basins", "barrier"),
                            v_versus_w_rows(vw, v_label))]
    blocks += [("figure", captions[k], figures[k]) for k in captions if k in figures]
    return blocks


def v_versus_w_rows(vw: dict[str, Any], v_label: str | None = None
                    ) -> list[tuple[str, str, str, str]]:
    """Rows (landscape, shape, basins, barrier) of the V-versus-W table."""
    def basins(entry: dict[str, Any]) -> str:
        # "flat": no minimum passes the rule, the values vary by less: a valley, not 0 basins
        return "one valley, no barrier" if entry["label"] == "flat" else _fmt(entry["basins"])

    around = v_label or vw["v"].get("around", "the first")
    v_ok = vw["v"].get("resolved", True)
    rows = [(f"random plane around the {around} minimum",
             vw["v"]["label"] if v_ok else "not resolved (!)",
             basins(vw["v"]) if v_ok else "not counted: the grid does not resolve the basin",
             "")]
    if "w_plane" in vw:
        w = vw["w_plane"]
        barriers = ", ".join(_fmt(b["height"], 3) for b in w["barriers"]) or "none"
        if w.get("anchored_basins") and not w.get("missed"):
            rows.append((f"plane through {', '.join(w['through'])}", f"{w['label']} (!)",
                         f"{_fmt(w['basins'])} at the models (grid too coarse for their "
                         "widths)", f"barriers {barriers} (upper bounds)"))
        elif w.get("missed") or w.get("unresolved"):
            why = (f"no grid point on {', '.join(w['missed'])}" if w.get("missed") else
                   f"the grid does not resolve the basin of {', '.join(w['unresolved'])}")
            rows.append((f"plane through {', '.join(w['through'])}", "not resolved (!)",
                         f"not counted: {why}", "not measured"))
        else:
            rows.append((f"plane through {', '.join(w['through'])}", w["label"], basins(w),
                         f"barriers {barriers}"))
    if "curve" in vw:
        line, curve = vw["line"], vw["curve"]
        rows += [
            (f"straight line {' to '.join(line['between'])}", line["label"], basins(line),
             f"train loss {_fmt(line['endpoint_train_loss'], 3)} -> max "
             f"{_fmt(line['max_train_loss'], 3)}; test error max "
             f"{_pct(line['max_test_error'])}"),
            ("Bezier curve between the same two", curve["label"], basins(curve),
             f"train loss {_fmt(curve['endpoint_train_loss'], 3)} -> max "
             f"{_fmt(curve['max_train_loss'], 3)}; test error max "
             f"{_pct(curve['max_test_error'])}")]
    return rows


def barrier_sentence(barriers: dict[str, Any]) -> str:
    """The barrier matrix in words: the basins, the highest and lowest barrier, the test
    error's largest rise."""
    labels, train = barriers["labels"], barriers["train_barrier"]
    pairs = [(train[i][j], labels[i], labels[j]) for i in range(len(labels))
             for j in range(i + 1, len(labels)) if train[i][j] is not None]
    err = [v for row in barriers["test_error_barrier"] for v in row if v is not None]
    groups = barriers["groups"]
    words = "; ".join(
        "{" + ", ".join(g["members"]) + "}" + ("" if g["direct"] or len(g["members"]) < 3
                                               else " (connected through a chain)")
        for g in groups)
    text = (f"On the straight line between each pair of the {len(labels)} minima "
            f"({barriers['points']} points), {len(groups)} basin"
            f"{'s' if len(groups) != 1 else ''} by the rule {barriers['rule']}: {words}.")
    if pairs:
        high, low = max(pairs), min(pairs)
        text += (f" Highest training-loss barrier {_fmt(high[0], 3)} ({high[1]} - {high[2]}), "
                 f"lowest {_fmt(low[0], 3)} ({low[1]} - {low[2]})")
    if err:
        text += f"; the test error rises at most {_pct(max(err))} above the worse end"
    return text + "."


def write_report(summary: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write the study's ``summary.json``, ``report.md`` and ``report.html`` (figures
    embedded) atomically.

    Args:
        summary: the summary of ``compare`` or of the study (``labels``, ``models``,
            ``ratios``, ``interpolation``, ``setup``, ``provenance``, ``figures`` and
            ``scenes`` (interactive HTML pages) relative to ``out``, ``seconds``,
            ``reused_steps``; the study adds ``study`` and ``checks``; either may add
            ``v_versus_w``).
        out: the study folder.

    Returns:
        name -> path of the three files (``summary``, ``report_md``, ``report_html``).
    """
    out = Path(out)
    figures = {k: v for k, v in summary.get("figures", {}).items() if (out / v).exists()}
    scenes = {k: v for k, v in summary.get("scenes", {}).items() if (out / v).exists()}
    write_json(out / "summary.json", summary)
    files = {"summary": out / "summary.json"}
    files.update(write_document(study_blocks(summary, figures, scenes), out, "report",
                                "landscape: " + _intro(summary)[0]))
    return files
