"""The study's report: ``summary.json``, ``report.md`` and a self-contained ``report.html``.

Only formats numbers it is given; computes nothing about models.
"""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

from ._util import atomic_path, write_json

_RUNS = ("small_batch", "large_batch")


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
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not a:
        return ""
    return f"{b / a:.2f}x"


def table_rows(summary: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Rows (quantity, small batch, large batch, large / small) of the report's table."""
    sb, lb = summary["small_batch"], summary["large_batch"]
    rows = [
        ("batch size", _fmt(sb["batch_size"]) + (" (full)" if sb["full_batch"] else ""),
         _fmt(lb["batch_size"]) + (" (full)" if lb["full_batch"] else ""), ""),
        ("epochs (steps)", f"{sb['epochs']} ({sb['steps']:,})", f"{lb['epochs']} ({lb['steps']:,})",
         ""),
        ("train loss", _fmt(sb["train_loss"]), _fmt(lb["train_loss"]), ""),
        ("train accuracy", _pct(sb["train_accuracy"]), _pct(lb["train_accuracy"]), ""),
        ("test accuracy", _pct(sb["test_accuracy"]), _pct(lb["test_accuracy"]), ""),
        ("generalization gap (train - test acc.)", _pct(sb["generalization_gap"]),
         _pct(lb["generalization_gap"]), ""),
        ("top Hessian eigenvalue", _fmt(sb["top_eigenvalue"]), _fmt(lb["top_eigenvalue"]),
         _ratio(sb["top_eigenvalue"], lb["top_eigenvalue"])),
        ("top eigenvalues", ", ".join(_fmt(v, 3) for v in sb["top_eigenvalues"]),
         ", ".join(_fmt(v, 3) for v in lb["top_eigenvalues"]), ""),
        ("most negative eigenvalue", _fmt(sb["bottom_eigenvalue"]),
         _fmt(lb["bottom_eigenvalue"]), ""),
        ("Hessian trace (+- s.e.)", f"{_fmt(sb['trace'])} +- {_fmt(sb['trace_stderr'], 2)}",
         f"{_fmt(lb['trace'])} +- {_fmt(lb['trace_stderr'], 2)}", _ratio(sb["trace"], lb["trace"])),
    ]
    for name in sb["sharpness_all"]:
        rows.append((f"Keskar sharpness ({name})", _fmt(sb["sharpness_all"][name]),
                     _fmt(lb["sharpness_all"][name]),
                     _ratio(sb["sharpness_all"][name], lb["sharpness_all"][name])))
    rows += [
        ("adaptive sharpness (worst case, l2)", _fmt(sb["adaptive_sharpness"]),
         _fmt(lb["adaptive_sharpness"]), _ratio(sb["adaptive_sharpness"],
                                                lb["adaptive_sharpness"])),
        ("adaptive sharpness (average case)", _fmt(sb["average_sharpness"]),
         _fmt(lb["average_sharpness"]), ""),
        ("basin shape 1-D / 2-D", f"{sb['basin_label_1d']} / {sb['basin_label_2d']}",
         f"{lb['basin_label_1d']} / {lb['basin_label_2d']}", ""),
        ("basins in the 2-D plane", _fmt(sb["basins_2d"]), _fmt(lb["basins_2d"]), ""),
        ("basin width 1-D / 2-D", f"{_fmt(sb['basin_width_1d'], 3)} / {_fmt(sb['basin_width_2d'], 3)}",
         f"{_fmt(lb['basin_width_1d'], 3)} / {_fmt(lb['basin_width_2d'], 3)}", ""),
        ("curvature at the centre (1-D)", _fmt(sb["curvature_1d"]), _fmt(lb["curvature_1d"]),
         _ratio(sb["curvature_1d"], lb["curvature_1d"])),
    ]
    return rows


def findings(summary: dict[str, Any]) -> list[str]:
    """Plain sentences on what the numbers show, including where they contradict the usual
    claims (a large batch finds a sharper minimum that generalizes worse)."""
    sb, lb, checks = summary["small_batch"], summary["large_batch"], summary["checks"]
    out = []
    diff = 100 * (sb["test_accuracy"] - lb["test_accuracy"])
    if checks["small_batch_tests_better"]:
        out.append(f"The small-batch model tests {diff:.1f} points better "
                   f"({_pct(sb['test_accuracy'])} vs {_pct(lb['test_accuracy'])}) with "
                   f"training accuracy {_pct(sb['train_accuracy'])} vs "
                   f"{_pct(lb['train_accuracy'])}: the usual generalization gap.")
    else:
        out.append(f"Unlike the usual claim, the large-batch model tests as well or better "
                   f"({_pct(lb['test_accuracy'])} vs {_pct(sb['test_accuracy'])}).")
    ratio = summary["ratios"]["top_eigenvalue"]
    if checks["large_batch_sharper_top_eigenvalue"]:
        out.append(f"The large-batch minimum is sharper: its top Hessian eigenvalue is "
                   f"{ratio:.1f} times the small-batch one ({_fmt(lb['top_eigenvalue'])} vs "
                   f"{_fmt(sb['top_eigenvalue'])}), and the trace is "
                   f"{_fmt(lb['trace'], 3)} vs {_fmt(sb['trace'], 3)}.")
    else:
        out.append(f"Unlike the usual claim, the large-batch minimum is not sharper by the top "
                   f"eigenvalue ({_fmt(lb['top_eigenvalue'])} vs {_fmt(sb['top_eigenvalue'])}).")
    word = "higher" if checks["large_batch_higher_sharpness"] else "not higher"
    out.append(f"Keskar sharpness (eps={_fmt(sb['sharpness_eps'])}) is {word} for the large "
               f"batch: {_fmt(lb['sharpness'])} vs {_fmt(sb['sharpness'])}. Raw eigenvalues and "
               "this sharpness change under reparametrizations that leave the function unchanged;"
               " the adaptive sharpness and the filter-normalized plots do not.")
    w_sb, w_lb = sb["basin_width_1d"], lb["basin_width_1d"]
    if w_sb is not None and w_lb is not None:
        out.append(f"Along a filter-normalized direction the basin (loss within "
                   f"{summary['setup']['config']['rise']} of the minimum) is {_fmt(w_sb, 3)} wide "
                   f"for the small batch and {_fmt(w_lb, 3)} for the large batch; shapes: "
                   f"{sb['basin_label_2d']} (small) and {lb['basin_label_2d']} (large) in 2-D, "
                   f"with {sb['basins_2d']} and {lb['basins_2d']} basins in the plane.")
    barrier = summary["interpolation"]["barrier"]
    if barrier is not None:
        out.append(f"On the straight line between the two minima the training loss rises "
                   f"{_fmt(barrier, 3)} above the higher end "
                   f"({'a barrier separates them' if barrier > 1e-3 else 'no barrier'}).")
    return out


SCENE_CAPTION = ("The same planes as an interactive 3-D scene: drag to rotate, scroll to zoom, "
                 "shift-drag to pan (vtk.js; the file opens offline in any browser).")


def study_blocks(summary: dict[str, Any], figures: dict[str, str],
                 scenes: dict[str, str] | None = None) -> list[tuple]:
    """The study report as document blocks (see ``render_markdown``); each interactive
    scene follows the figure of the same name (or closes the figures)."""
    setup = summary["setup"]
    sb, lb = summary["small_batch"], summary["large_batch"]
    intro = (
        f"Dataset **{setup['dataset']}** ({setup['train_examples']:,} train / "
        f"{setup['test_examples']:,} test examples), model **{setup['model']}** "
        f"({setup['parameters']:,} parameters), the same initialization (seed {setup['seed']}) "
        f"for both runs. Small batch: {sb['optimizer']}, batch {sb['batch_size']}, lr {sb['lr']}, "
        f"{sb['epochs']} epochs. Large batch: {lb['optimizer']}, batch {lb['batch_size']}"
        f"{' (full)' if lb['full_batch'] else ''}, lr {lb['lr']}, {lb['epochs']} epochs. "
        "Epoch budgets differ so that each run fits its training set. Curvature is measured on "
        f"the full training loss with the model in {setup['hessian_mode']} mode; surfaces use "
        "filter-normalized random directions (bias and BatchNorm entries zeroed) drawn with the "
        "same seed for both models.")
    captions = {
        "interpolation": "Loss and accuracy on the line from the small-batch (alpha=0) to the "
                         "large-batch (alpha=1) minimum.",
        "lines_1d": "Loss along one filter-normalized random direction around each minimum "
                    "(linear axis capped near the minima; bars: basin width at +rise).",
        "contours_2d": "Training loss on a filter-normalized random plane (shared colour scale "
                       "capped near the minima; dashed: basin edge at +rise).",
        "surface_3d": "The same planes in 3-D (shared height and colour scale, clipped near "
                      "the minima).",
        "spectrum": "Hessian spectral density (stochastic Lanczos quadrature, one Gaussian "
                    "kernel for both).",
        "training": "Training and test curves.",
        "eigen_slices": "Loss along each model's own top Hessian eigenvector (unit norm): the "
                        "curvature that eigenvalues and sharpness measure, which random "
                        "directions rarely meet.",
        "sharpness": "Top Hessian eigenvalue during training, with each run's stability "
                     "threshold 2(1+beta)/lr.",
    }
    blocks: list[tuple] = [
        ("h1", "Sharp versus flat minima: small batch vs large batch"), ("p", intro),
        ("h2", "Results"),
        ("table", ("quantity", "small batch", "large batch", "large / small"),
         table_rows(summary)),
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
        blocks += v_versus_w_blocks(summary["v_versus_w"], figures)
    blocks += [("h2", "Provenance"), ("p", provenance_line(summary))]
    return blocks


def v_versus_w_blocks(vw: dict[str, Any], figures: dict[str, str]) -> list[tuple]:
    """The "V versus W" section: one minimum's plane against the plane through three minima
    of the same network, and the straight line between two minima against their curve."""
    run = vw["seeds_run"]
    runs = vw["seed_runs"]
    w, curve = vw["w_plane"], vw["curve"]
    names = ", ".join(runs)
    intro = (f"The same network trained from {len(runs)} seeds ({names}; batch "
             f"{run['batch_size']}, lr {run['lr']}, {run['epochs']} epochs): test accuracy "
             + ", ".join(_pct(r["test_accuracy"]) for r in runs.values())
             + ". A random plane around one minimum shows one basin (a V); the plane through "
             "three minima and the straight line between two show several (a W), while a "
             f"Bezier curve trained between the same two minima ({curve['epochs']} epochs, "
             "endpoints fixed; Garipov et al. 2018) stays low. A basin counts when "
             f"{w['rule'] or 'its depth passes the threshold'} (its barrier at least doubles "
             "the loss).")
    captions = {
        "v_versus_w_2d": "Training loss on a random plane around one minimum (left) and on the "
                         "plane through three minima of the same network (right), one log "
                         "colour scale; circles: the trained minima, star: the lowest point.",
        "v_versus_w_3d": "The same two planes in 3-D (shared height and colour scale).",
        "v_versus_w_paths": "Loss and accuracy from one minimum to another: the straight line "
                            "(a barrier) against the trained Bezier curve.",
    }
    blocks: list[tuple] = [("h2", "V versus W: one minimum against many"), ("p", intro),
                           ("table", ("landscape", "shape", "basins", "barrier"),
                            v_versus_w_rows(vw))]
    blocks += [("figure", captions[k], figures[k]) for k in captions if k in figures]
    return blocks


def v_versus_w_rows(vw: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Rows (landscape, shape, basins, barrier) of the V-versus-W table."""
    w, line, curve = vw["w_plane"], vw["line"], vw["curve"]
    barriers = ", ".join(_fmt(b["height"], 3) for b in w["barriers"]) or "none"
    return [
        ("random plane around the small-batch minimum", f"{vw['v']['label']}",
         _fmt(vw["v"]["basins"]), ""),
        (f"plane through {', '.join(w['through'])}", w["label"], _fmt(w["basins"]),
         f"barriers {barriers}"),
        (f"straight line {' to '.join(line['between'])}", line["label"], _fmt(line["basins"]),
         f"train loss {_fmt(line['endpoint_train_loss'], 3)} -> max "
         f"{_fmt(line['max_train_loss'], 3)}; test error max {_pct(line['max_test_error'])}"),
        ("Bezier curve between the same two", curve["label"], _fmt(curve["basins"]),
         f"train loss {_fmt(curve['endpoint_train_loss'], 3)} -> max "
         f"{_fmt(curve['max_train_loss'], 3)}; test error max {_pct(curve['max_test_error'])}"),
    ]


def provenance_line(summary: dict[str, Any]) -> str:
    """One sentence: when, by which command, with which versions, how long, what was reused."""
    prov = summary["provenance"]
    return (f"Made {prov['created']} by `{prov['command']}` with "
            + ", ".join(f"{k} {v}" for k, v in prov["versions"].items())
            + f"; {summary['seconds']:.0f} s"
            + (f", reused: {', '.join(summary['reused_steps'])}"
               if summary.get("reused_steps") else "") + ".")


def render_markdown(blocks: list[tuple]) -> str:
    """Markdown of blocks ``("h1"|"h2"|"p", text)``, ``("ul", items)``,
    ``("table", header, rows)`` and ``("figure", caption, relative_path)``."""
    lines: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2"):
            lines += ["#" * int(kind[1]) + " " + block[1], ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "ul":
            lines += [f"- {item}" for item in block[1]] + [""]
        elif kind == "table":
            header, rows = block[1], block[2]
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
            lines.append("")
        elif kind == "figure":
            lines += [f"**{block[1]}**", "", f"![{block[1]}]({block[2]})", ""]
        elif kind == "scene":
            lines += [f"[Interactive 3-D scene]({block[2]}): {block[1]}", ""]
    return "\n".join(lines)


_CSS = """body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}td:first-child,th:first-child
{text-align:left}th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}
figure{margin:1.5em 0}figcaption{color:#555;font-size:.92em}code{background:#f5f5f5}
iframe{width:100%;height:560px;border:1px solid #eee}"""


def render_html(blocks: list[tuple], base: Path, title: str) -> str:
    """A self-contained HTML page of the same blocks; figures (relative to ``base``) are
    embedded as base64 PNG; interactive scenes, separate pages next to it, are shown in a
    frame with a link."""
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
             f"<style>{_CSS}</style></head><body>"]
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2"):
            parts.append(f"<{kind}>{esc(block[1])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{esc(h)}</th>" for h in block[1])
            body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>"
                           for row in block[2])
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        elif kind == "figure":
            data = base64.b64encode((base / block[2]).read_bytes()).decode()
            parts.append(f"<figure><img alt='{esc(block[1])}' src='data:image/png;base64,"
                         f"{data}'><figcaption>{esc(block[1])}</figcaption></figure>")
        elif kind == "scene":
            href = esc(Path(block[2]).as_posix())
            parts.append(f"<figure class='scene'><iframe src='{href}' title='{esc(block[1])}'>"
                         f"</iframe><figcaption>{esc(block[1])} <a href='{href}'>Open it on its "
                         f"own page</a> ({href}, next to this report).</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _inline(text: str) -> str:
    """Escape, then turn **bold** and `code` into tags."""
    out = html.escape(text)
    for mark, tag in (("**", "b"), ("`", "code")):
        pieces = out.split(mark)
        out = "".join(p if i % 2 == 0 else f"<{tag}>{p}</{tag}>" for i, p in enumerate(pieces))
    return out


def write_document(blocks: list[tuple], out: Path, stem: str, title: str) -> dict[str, Path]:
    """Write ``<stem>.md`` and ``<stem>.html`` atomically; returns their paths."""
    files = {f"{stem}_md": out / f"{stem}.md", f"{stem}_html": out / f"{stem}.html"}
    with atomic_path(files[f"{stem}_md"]) as tmp:
        tmp.write_text(render_markdown(blocks))
    with atomic_path(files[f"{stem}_html"]) as tmp:
        tmp.write_text(render_html(blocks, out, title))
    return files


def write_report(summary: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write the study's ``summary.json``, ``report.md`` and ``report.html`` (figures
    embedded) atomically.

    Args:
        summary: the study summary (``small_batch``, ``large_batch``, ``checks``, ``ratios``,
            ``interpolation``, ``setup``, ``provenance``, ``figures`` and ``scenes``
            (interactive HTML pages) relative to ``out``, ``seconds``, ``reused_steps``).
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
                                "landscape: sharp vs flat minima"))
    return files
