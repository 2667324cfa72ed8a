"""Figures of a recipe grid's summary (``landscape.workflows.recipes``): nothing here computes a measure.

``plot_measure_grid``: one panel per measure, the measure against the generalization gap; the
varying axes are drawn as colour (the lr first, as the measure most often tracks it), marker
shape and filled/hollow (a two-valued axis, e.g. SGD vs SAM); log scale where a measure's
positive values span more than two decades; each title gives the tau, the runs with a finite
value and "(coarse)" for a measure computed coarsely. ``plot_tau_bars``: each measure's
Kendall tau with the gap and its bootstrap interval (pale where the interval spans 0), its
granulated tau, and its tau with the learning rate.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

ENCODING_ORDER = ("lr", "batch_size", "optimizer", "weight_decay")
"""Which varying axis gets colour, then marker, then fill (a fill needs two values)."""
MARKERS = "os^Dvp*hX"


def _values(summary: dict[str, Any], measure: str) -> tuple[list[float], list[float], list]:
    """(measure, gap, settings) of the runs where both numbers are finite."""
    xs, ys, settings = [], [], []
    for run in summary["runs"]:
        if run.get("left_out"):
            continue
        x, y = run["measures"].get(measure), run.get("generalization_gap")
        if x is not None and y is not None and math.isfinite(x) and math.isfinite(y):
            xs.append(x)
            ys.append(y)
            settings.append(run["settings"])
    return xs, ys, settings


def _encodings(summary: dict[str, Any]) -> dict[str, tuple[str, list]]:
    """kind (``colour``, ``marker``, ``fill``) -> (axis, its sorted values)."""
    varying = summary.get("axes") or ["seed"]
    ordered = [a for a in ENCODING_ORDER if a in varying] + [a for a in varying
                                                             if a not in ENCODING_ORDER]
    values = {a: sorted({r["settings"].get(a) for r in summary["runs"]}, key=_order)
              for a in ordered}
    out: dict[str, tuple[str, list]] = {}
    for axis in ordered:
        if "colour" not in out:
            out["colour"] = (axis, values[axis])
        elif "fill" not in out and len(values[axis]) == 2 and axis == "optimizer":
            out["fill"] = (axis, values[axis])
        elif "marker" not in out and len(values[axis]) <= len(MARKERS):
            out["marker"] = (axis, values[axis])
        elif "fill" not in out and len(values[axis]) == 2:
            out["fill"] = (axis, values[axis])
    return out


def _order(value: Any) -> tuple:
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def _style(settings: dict[str, Any], enc: dict[str, tuple[str, list]], cmap) -> dict[str, Any]:
    """Scatter keywords of one run."""
    axis, values = enc["colour"]
    colour = cmap(values.index(settings.get(axis)) % 10)
    style = {"s": 26, "linewidths": 1.2, "edgecolors": colour, "facecolors": colour,
             "marker": "o"}
    if "marker" in enc:
        axis, values = enc["marker"]
        style["marker"] = MARKERS[values.index(settings.get(axis))]
    if "fill" in enc:
        axis, values = enc["fill"]
        if values.index(settings.get(axis)) == 1:
            style["facecolors"] = "none"
    return style


def _legend_handles(enc: dict[str, tuple[str, list]], cmap) -> list:
    """Legend entries: the colours, then the markers and the fill, in grey."""
    from matplotlib.lines import Line2D

    handles = []
    axis, values = enc["colour"]
    handles += [Line2D([], [], ls="", marker="s", color=cmap(i % 10), label=f"{axis} {v}")
                for i, v in enumerate(values)]
    if "marker" in enc:
        axis, values = enc["marker"]
        handles += [Line2D([], [], ls="", marker=MARKERS[i], color="0.3", label=f"{axis} {v}")
                    for i, v in enumerate(values)]
    if "fill" in enc:
        axis, values = enc["fill"]
        handles += [Line2D([], [], ls="", marker="o", color="0.3", label=f"{axis} {values[0]}"),
                    Line2D([], [], ls="", marker="o", color="0.3", markerfacecolor="none",
                           label=f"{axis} {values[1]}")]
    return handles


def plot_measure_grid(summary: dict[str, Any], out: str | Path) -> Path:
    """Scatter plots of every measure against the test-train error gap; returns the path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    measures = [m for m in summary["correlations"] if m != "loss_gap"]
    coarse = summary.get("coarse") or {}
    cols = 4
    rows = math.ceil((len(measures) + 1) / cols)  # one slot left for the legend
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.9 * rows), squeeze=False)
    enc, cmap = _encodings(summary), plt.get_cmap("tab10")
    for ax, name in zip(axes.flat, measures):
        xs, ys, settings = _values(summary, name)
        for x, y, s in zip(xs, ys, settings):
            ax.scatter([x], [y], **_style(s, enc, cmap))
        positive = [x for x in xs if x > 0]
        if positive and len(positive) == len(xs) and max(positive) / min(positive) > 100:
            ax.set_xscale("log")
        else:
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
        tau = summary["correlations"][name]["kendall_tau"]
        tau_text = "n/a" if tau is None or tau != tau else f"{tau:+.2f}"
        label = f"{name} (coarse)" if name in coarse else name
        ax.set_title(f"{label}\ntau {tau_text}, {len(xs)} of {len(summary['runs'])} runs",
                     fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.get_offset_text().set_fontsize(7)
    for ax in list(axes.flat)[len(measures):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("test - train error", fontsize=8)
    list(axes.flat)[-1].legend(handles=_legend_handles(enc, cmap), loc="center", fontsize=8,
                               frameon=False)
    fig.tight_layout()
    return _save(fig, out)


def plot_tau_bars(summary: dict[str, Any], out: str | Path) -> Path:
    """Kendall tau of each measure with the gap (bars with 95% bootstrap intervals, pale
    where the interval spans 0), its granulated tau (diamonds) and its tau with the learning
    rate (thin red bars); returns the path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(summary["correlations"])
    num = lambda v: float("nan") if v is None else float(v)  # noqa: E731
    table = [summary["correlations"][n] for n in names]
    taus = np.array([num(c["kendall_tau"]) for c in table])
    lows, highs = (np.array([num(c["interval"][i]) for c in table]) for i in (0, 1))
    granulated = np.array([num(c["granulated_tau"]) for c in table])
    lr = np.array([num(c["tau_vs_lr"]) for c in table])
    sure = (lows > 0) | (highs < 0)
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(names) + 1.4))
    y = np.arange(len(names))
    err = np.nan_to_num(np.vstack([taus - lows, highs - taus]))
    ax.barh(y - 0.12, np.nan_to_num(taus), height=0.45, xerr=err, capsize=3,
            color=np.where(sure, "tab:blue", "#b9cfe3"), ecolor="0.2")
    ax.scatter(granulated, y - 0.12, marker="D", s=22, color="black", zorder=3)
    ax.barh(y + 0.27, np.nan_to_num(lr), height=0.2, color="tab:red", alpha=0.8)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlim(-1.05, 1.05)
    kept = sum(not r.get("left_out") for r in summary["runs"])
    ax.set_xlabel(f"Kendall tau over {kept} runs" + (f" ({len(summary['runs']) - kept} left "
                                                     "out: not trained)" if kept < len(
                                                         summary["runs"]) else ""))
    ax.invert_yaxis()
    # below the axes: inside, it would hide bars
    fig.legend(handles=_tau_handles(), fontsize=7, loc="lower center", ncol=2, frameon=False)
    fig.tight_layout(rect=(0, 0.5 / fig.get_figheight(), 1, 1))
    return _save(fig, out)


def _tau_handles() -> list:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    return [Patch(color="tab:blue", label="tau with the gap, 95% interval excludes 0"),
            Patch(color="#b9cfe3", label="tau with the gap, interval spans 0"),
            Line2D([], [], ls="", marker="D", color="black", label="granulated tau (gap)"),
            Patch(color="tab:red", alpha=0.8, label="tau with the lr")]


def _save(fig, out: str | Path) -> Path:
    """Save through a temporary file in the same folder (a kill never leaves half a PNG)."""
    import matplotlib.pyplot as plt

    from ..util import atomic_path

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
