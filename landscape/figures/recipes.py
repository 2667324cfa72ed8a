"""Figures of a recipe grid's summary (``landscape.workflows.recipes``): nothing here computes a measure.

``plot_measure_grid``: one panel per measure, the measure against the generalization gap,
one colour per value of the axis that varies (the first varying axis), log scale where a
measure's positive values span more than two decades. ``plot_tau_bars``: each measure's
Kendall tau with the gap and its bootstrap interval, beside its tau with the learning rate.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def _values(summary: dict[str, Any], measure: str) -> tuple[list[float], list[float], list]:
    """(measure, gap, colour key) of the runs where both numbers are finite."""
    axis = (summary.get("axes") or ["seed"])[0]
    xs, ys, keys = [], [], []
    for run in summary["runs"]:
        x, y = run["measures"].get(measure), run.get("generalization_gap")
        if x is not None and y is not None and math.isfinite(x) and math.isfinite(y):
            xs.append(x)
            ys.append(y)
            keys.append(run["settings"].get(axis))
    return xs, ys, keys


def plot_measure_grid(summary: dict[str, Any], out: str | Path) -> Path:
    """Scatter plots of every measure against the test-train error gap; returns the path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measures = list(summary["correlations"])
    measures = [m for m in measures if m != "loss_gap"]
    cols = 4
    rows = math.ceil(len(measures) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    axis = (summary.get("axes") or ["seed"])[0]
    values = sorted({run["settings"].get(axis) for run in summary["runs"]}, key=str)
    colours = {v: plt.cm.viridis(i / max(1, len(values) - 1)) for i, v in enumerate(values)}
    for ax, name in zip(axes.flat, measures):
        xs, ys, keys = _values(summary, name)
        for v in values:
            pts = [(x, y) for x, y, k in zip(xs, ys, keys) if k == v]
            if pts:
                ax.scatter(*zip(*pts), color=colours[v], s=18, label=f"{axis} {v}")
        positive = [x for x in xs if x > 0]
        if positive and len(positive) == len(xs) and max(positive) / min(positive) > 100:
            ax.set_xscale("log")
        tau = summary["correlations"][name]["kendall_tau"]
        ax.set_title(f"{name}\ntau {tau:+.2f}" if tau is not None and tau == tau
                     else f"{name}\ntau n/a", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(measures):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("test - train error", fontsize=8)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower right", fontsize=8)
    fig.tight_layout()
    return _save(fig, out)


def plot_tau_bars(summary: dict[str, Any], out: str | Path) -> Path:
    """Kendall tau of each measure with the gap (bars, 95% bootstrap intervals) and with the
    learning rate (dots); returns the path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(summary["correlations"])
    nan = float("nan")
    get = lambda c, k: nan if c[k] is None else c[k]  # noqa: E731
    taus = np.array([get(summary["correlations"][n], "kendall_tau") for n in names])
    lows = np.array([nan if summary["correlations"][n]["interval"][0] is None
                     else summary["correlations"][n]["interval"][0] for n in names])
    highs = np.array([nan if summary["correlations"][n]["interval"][1] is None
                      else summary["correlations"][n]["interval"][1] for n in names])
    lr = np.array([get(summary["correlations"][n], "tau_vs_lr") for n in names])
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.2))
    y = np.arange(len(names))
    err = np.vstack([taus - lows, highs - taus])
    ax.barh(y, np.nan_to_num(taus), xerr=np.nan_to_num(err), color="tab:blue", alpha=0.7,
            capsize=3, label="tau with the gap (95% interval)")
    ax.scatter(lr, y, color="tab:red", zorder=3, s=16, label="tau with lr")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("Kendall tau")
    ax.invert_yaxis()
    # below the axes: inside, it would hide the last bars' intervals
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="lower center", ncol=2)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save(fig, out)


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
