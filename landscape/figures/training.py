"""Figures over training and over runs: training curves against epoch, quantities against a
swept setting (batch size, learning rate), the top Hessian eigenvalue against optimizer
steps with each run's stability threshold, and one run's curvature beside its train and test
accuracy on one step axis (``plot_curvature_accuracy``: the grokking transition).

Inputs are the histories and summary rows that training and sweeps record; nothing here
trains or measures.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure

from ..errors import LandscapeError
from .data import pretty
from .style import RUN_COLORS, STYLE, finish_figure, new_figure


def plot_history(histories: Sequence[Sequence[dict[str, Any]]], *,
                 labels: Sequence[str] | None = None,
                 metrics: Sequence[str] = ("loss", "accuracy"), log: bool = True,
                 size: tuple[float, float] | None = None, title: str | None = None,
                 out: str | os.PathLike | None = None, dpi: float | None = None) -> Figure:
    """Training curves of several runs against epoch (log axis): one panel per entry of
    ``metrics`` (``loss``, ``accuracy``), train solid and test dashed, one colour per run.

    Args:
        histories: per run, the per-epoch entries ``landscape.train`` records (``epoch`` and
            any of ``train_loss``, ``test_loss``, ``train_acc``, ``test_acc``).
        labels: one legend label per run.
        metrics: panels to draw.
        log: logarithmic loss axis.
        size, title, out, dpi: figure size, title, where to save, resolution.

    Returns:
        The figure.
    """
    runs = [list(h) for h in histories]
    if not runs or any(not h for h in runs):
        raise LandscapeError("plot_history needs at least one non-empty history")
    names = list(labels) if labels else [f"run {i + 1}" for i in range(len(runs))]
    keys = {"loss": ("loss", 1.0, "loss"), "accuracy": ("acc", 100.0, "accuracy (%)")}
    unknown = [m for m in metrics if m not in keys]
    if unknown:
        raise LandscapeError(f"unknown history metric {unknown[0]!r}: use loss or accuracy")
    fig = new_figure(size or (5.0 * len(metrics), 3.8))
    axes = np.atleast_1d(fig.subplots(1, len(metrics)))
    for ax, metric in zip(axes, metrics):
        suffix, scale, ylabel = keys[metric]
        for k, (hist, name) in enumerate(zip(runs, names)):
            epochs = np.array([e["epoch"] for e in hist], dtype=float)
            for split, style in (("train", "-"), ("test", "--")):
                if f"{split}_{suffix}" not in hist[0]:
                    continue
                values = np.array([e[f"{split}_{suffix}"] for e in hist], dtype=float) * scale
                ax.plot(epochs, values, style, color=f"C{k}", label=f"{name}, {split}")
        ax.set_xscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        if log and metric == "loss":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return finish_figure(fig, out, dpi)


def plot_sweep(rows: Sequence[dict[str, Any]], x: str, ys: Sequence[str], *,
               ylabel: str | None = None, log: bool = False, title: str | None = None,
               size: tuple[float, float] = (6.0, 4.0), out: str | os.PathLike | None = None,
               dpi: float | None = None) -> Figure:
    """Quantities against a swept setting (e.g. batch size, log2 axis), one line per key.

    Args:
        rows: one dict per run; rows missing a key (or holding None) are skipped for it.
        x: the key on the horizontal axis.
        ys: the keys to draw.
        ylabel, log, title, size, out, dpi: labels, log value axis, figure options.

    Returns:
        The figure.
    """
    fig = new_figure(size)
    ax = fig.subplots()
    drawn = 0
    for k, key in enumerate(ys):
        pts = sorted((float(r[x]), float(r[key])) for r in rows
                     if r.get(key) is not None and r.get(x) is not None)
        if not pts:
            continue
        px, py = np.array(pts).T
        ax.plot(px, py, "o-", color=f"C{k}", label=pretty(key))
        drawn += 1
    if not drawn:
        raise LandscapeError(f"no values to plot for {', '.join(ys)}")
    ax.set_xscale("log", base=2)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(pretty(x))
    ax.set_ylabel(ylabel or pretty(ys[0]))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return finish_figure(fig, out, dpi)


def plot_sharpness(histories: Sequence[Sequence[dict[str, Any]]], *,
                   labels: Sequence[str] | None = None,
                   thresholds: Sequence[float | None] | None = None,
                   threshold_names: Sequence[str] | None = None,
                   matrices: Sequence[str] | None = None, log: bool = True,
                   title: str | None = None, size: tuple[float, float] = (6.0, 4.0),
                   out: str | os.PathLike | None = None, dpi: float | None = None) -> Figure:
    """The tracked top eigenvalue (of the Hessian, or of the matrix each run names) against
    optimizer steps, one colour per run, with each run's stability threshold (e.g. ``2/lr``,
    ``2(1+beta)/lr``) as a dashed line of its colour.

    Args:
        histories: per run, history entries with ``step`` and ``lambda_max`` (entries whose
            ``lambda_max`` is missing or NaN are skipped), as ``train(track_eigenvalues=N)``
            records them.
        labels: one legend label per run.
        thresholds: one threshold per run (None: none drawn for it).
        threshold_names: how each threshold is written in the legend (e.g. ``2(1+β)/lr``).
        matrices: per run, the name of the tracked matrix (``Hessian``, ``GGN``, ``Fisher``,
            ``empirical Fisher``; default all ``Hessian``): the axis names it when all runs
            agree, else each run's legend entry does.
        log: logarithmic eigenvalue axis (runs and thresholds often differ 10x or more).
        title, size, out, dpi: figure options.

    Returns:
        The figure.
    """
    runs = [list(h) for h in histories]
    names = list(labels) if labels else [f"run {i + 1}" for i in range(len(runs))]
    limits = list(thresholds) if thresholds is not None else [None] * len(runs)
    texts = list(threshold_names) if threshold_names else ["threshold"] * len(runs)
    kinds = list(matrices) if matrices is not None else ["Hessian"] * len(runs)
    if not runs or not len(runs) == len(names) == len(limits) == len(kinds):
        raise LandscapeError("plot_sharpness needs one label, threshold and matrix per run")
    shared = kinds[0] if len(set(kinds)) == 1 else None
    with rc_context(STYLE):
        fig = new_figure(size)
        ax = fig.add_subplot()
        drawn = 0
        for k, (hist, name, limit) in enumerate(zip(runs, names, limits)):
            color = RUN_COLORS[k % len(RUN_COLORS)]
            pts = np.array([(e["step"], e["lambda_max"]) for e in hist
                            if e.get("lambda_max") is not None
                            and np.isfinite(e["lambda_max"])], dtype=float).reshape(-1, 2)
            if len(pts):
                ax.plot(pts[:, 0], pts[:, 1], "o-", ms=3, color=color,
                        label=rf"{name}: $\lambda_{{max}}$"
                        + ("" if shared else f" ({kinds[k]})"))
                drawn += 1
            if limit is not None:
                ax.axhline(limit, color=color, ls="--", lw=1.3,
                           label=f"{name}: {texts[k]} = {limit:.3g}")
        if not drawn:
            raise LandscapeError("no lambda_max in these histories (train with "
                                 "--track-eigenvalues)")
        if log:
            ax.set_yscale("log")
        ends = [max(e["step"] for e in h) for h in runs if h]
        if min(ends) > 0 and max(ends) > 4 * min(ends):  # runs of very different lengths
            ax.set_xscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(f"top {shared + ' ' if shared else ''}eigenvalue " + r"$\lambda_{max}$")
        ax.grid(True, alpha=0.25, which="both")
        ax.figure.legend(loc="outside upper center", ncol=2, fontsize=8.5)
        if title:
            ax.set_title(title)
    return finish_figure(fig, out, dpi)


def plot_curvature_accuracy(history: Sequence[dict[str, Any]], *,
                            traces: Sequence[dict[str, Any]] | None = None,
                            marks: dict[str, float] | None = None, title: str | None = None,
                            size: tuple[float, float] = (7.5, 8.0),
                            out: str | os.PathLike | None = None,
                            dpi: float | None = None) -> Figure:
    """Curvature and accuracy of one run on one step axis, three panels: the top Hessian
    eigenvalue (and the Hessian trace, if given) on a log axis; the top eigenvalue divided by
    the training loss at the same step (linear axis from 0) (how much of its change is the loss level: the
    cross-entropy Hessian shrinks as the softmax saturates); train and test accuracy.

    Args:
        history: the run's history entries (``step``, ``train_acc``, ``test_acc``,
            ``train_loss``, and ``lambda_max`` where measured: missing or NaN is skipped), as
            ``train(track_eigenvalues=N)`` records them.
        traces: records with ``step``, ``trace`` and ``trace_stderr`` (e.g.
            ``landscape.grokking.checkpoint_traces``), or None.
        marks: name -> step of moments to mark with a vertical line in every panel (e.g.
            the memorizing and the grokked checkpoints).
        title, size, out, dpi: figure options.

    Returns:
        The figure.
    """
    steps = np.array([e["step"] for e in history], dtype=float)
    lam = np.array([np.nan if e.get("lambda_max") is None else e["lambda_max"]
                    for e in history], dtype=float)
    if not np.isfinite(lam).any():
        raise LandscapeError("no lambda_max in this history (train with --track-eigenvalues)")
    with rc_context(STYLE):
        fig = new_figure(size)
        axes = fig.subplots(3, 1, sharex=True, height_ratios=(1.2, 0.8, 1.0))
        _curvature_panel(axes[0], steps, lam, traces)
        _ratio_panel(axes[1], history, steps, lam)
        _accuracy_panel(axes[2], history, steps)
        for name, step in (marks or {}).items():
            for ax in axes:
                ax.axvline(step, color="0.35", ls=":", lw=1.3)
            # Named at the foot of the accuracy panel, below the curves of a grokking run.
            axes[2].annotate(f"{name}\n(step {step:g})", (step, 0.0), xycoords=("data",
                             "axes fraction"), xytext=(4, 4), textcoords="offset points",
                             va="bottom", fontsize=9, color="0.2")
        axes[-1].set_xlabel("optimizer step")
        axes[-1].set_xlim(0, steps.max())
        if title:
            fig.suptitle(title)
    return finish_figure(fig, out, dpi)


def _curvature_panel(ax, steps: np.ndarray, lam: np.ndarray,
                     traces: Sequence[dict[str, Any]] | None) -> None:
    """Top eigenvalue (tracked) and trace (measured on checkpoints), log axis."""
    ok = np.isfinite(lam)
    ax.plot(steps[ok], lam[ok], "o-", ms=4, color=RUN_COLORS[0],
            label=r"top eigenvalue $\lambda_{max}$ (tracked)")
    if traces:
        t = np.array([(r["step"], r["trace"], r["trace_stderr"]) for r in traces], dtype=float)
        ax.errorbar(t[:, 0], t[:, 1], yerr=t[:, 2], fmt="s--", ms=4, capsize=2,
                    color=RUN_COLORS[1], label="trace (Hutch++, on checkpoints)")
    ax.set_yscale("log")
    ax.set_ylabel("Hessian of the\ntraining loss")
    ax.grid(True, alpha=0.25, which="both")
    ax.legend(loc="lower left", fontsize=8.5)


def _ratio_panel(ax, history: Sequence[dict[str, Any]], steps: np.ndarray,
                 lam: np.ndarray) -> None:
    """The top eigenvalue over the training loss at the same step, linear axis from 0."""
    loss = np.array([e.get("train_loss", np.nan) for e in history], dtype=float)
    ok = np.isfinite(lam) & np.isfinite(loss) & (loss > 0)
    ax.plot(steps[ok], lam[ok] / loss[ok], "o-", ms=4, color=RUN_COLORS[2])
    ax.set_ylim(0, None)  # linear from 0: a ratio that barely moves looks flat
    ax.set_ylabel(r"$\lambda_{max}$ / train loss")
    ax.grid(True, alpha=0.25, which="both")


def _accuracy_panel(ax, history: Sequence[dict[str, Any]], steps: np.ndarray) -> None:
    """Train (solid) and test (dashed) accuracy in percent."""
    for k, split, style in ((0, "train", "-"), (1, "test", "--")):
        acc = np.array([e.get(f"{split}_acc", np.nan) for e in history], dtype=float)
        ax.plot(steps, 100 * acc, style, color=RUN_COLORS[k], label=f"{split} accuracy")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 102)
    ax.grid(True, alpha=0.25)
    ax.legend(loc="center right", fontsize=8.5)
