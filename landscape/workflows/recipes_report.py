"""The words and the Markdown report of a recipe grid (``landscape.workflows.recipes``).

``findings``: one sentence per measure (its Kendall tau with the gap, interval, granulated tau,
tau with the lr, and a note when the measure was computed coarsely), a verdict over all of them,
and one sentence per optimizer comparison. ``write_report``: the figures and ``report.md``,
which ends with the ``landscape compare`` command of the flattest and sharpest runs
(``flat_sharp_command``). Nothing here computes a measure.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from ..util import write_bytes


def findings(table: dict[str, dict[str, Any]], comparisons: list[dict[str, Any]],
             n_runs: int, coarse: Mapping[str, str] | None = None) -> list[str]:
    """The sentences of the summary.

    Args:
        table: measure -> its correlations (``generalization.correlations``).
        comparisons: the optimizer comparisons.
        n_runs: runs in the grid.
        coarse: measure -> how it was computed more coarsely than the defaults.

    Returns:
        The verdict first, then one sentence per measure and per comparison.
    """
    coarse = coarse or {}
    out, predictive, undefined = [], [], 0
    for name, c in table.items():
        low, high = (float("nan") if v is None else v for v in c["interval"])
        defined = math.isfinite(low) and math.isfinite(high)
        undefined += not defined
        if defined and (low > 0 or high < 0):
            predictive.append(name)
        out.append(f"{name}: tau with the test-train error gap {_signed(c['kendall_tau'])} ("
                   + _interval_words(low, high, c.get("runs", n_runs))
                   + f"), granulated {_signed(c['granulated_tau'])}, "
                   + _lr_words(c) + _missing_words(c.get("runs", n_runs), n_runs) + "."
                   + (f" Coarse: {coarse[name]}." if name in coarse else ""))
    out.insert(0, _verdict(n_runs, predictive, undefined, len(table)))
    out += [_comparison_words(c) for c in comparisons]
    return out


SMALL_SAMPLE = 30
"""Below this many runs a finding says that its interval is wide for want of runs."""


def _signed(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:+.2f}"


def _interval_words(low: float, high: float, runs: int) -> str:
    """The interval, and whether it says anything about the sign."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"no interval: {runs} runs are too few to resample"
    words = f"95% interval {low:+.2f} to {high:+.2f}"
    if low <= 0 <= high:
        words += ", spans 0: no reliable sign"
        if runs < SMALL_SAMPLE:
            words += f" from {runs} runs"
    return words


def _missing_words(runs: int, n_runs: int) -> str:
    missing = n_runs - runs
    return "" if missing <= 0 else f"; {missing} of {n_runs} runs have no finite value"


def _lr_words(c: Mapping[str, Any]) -> str:
    if c["tau_vs_lr"] is None or not math.isfinite(c["tau_vs_lr"]):
        return "tau with lr n/a (one lr)"
    return f"tau with lr {c['tau_vs_lr']:+.2f}" + _tracks_lr(c)


def _verdict(n_runs: int, predictive: list[str], undefined: int, measures: int) -> str:
    """The first sentence: which measures have an interval that excludes 0."""
    head = f"Over {n_runs} runs, "
    if measures and undefined == measures:
        return head + "no interval could be computed (too few runs): no measure's sign is known."
    if predictive:
        return head + f"the measures whose interval excludes 0: {', '.join(predictive)}."
    return head + ("no measure predicts the gap here: every interval spans 0"
                   + (" (or could not be computed)." if undefined else "."))


def _comparison_words(c: Mapping[str, Any]) -> str:
    """One optimizer against the base: medians, counts and sign-test p-values."""
    n = c["pairs"]
    p = lambda key: (f", sign test p = {c[key]:.2g}"  # noqa: E731
                     if c.get(key) is not None and math.isfinite(c[key]) else "")
    return (f"{c['optimizer']} vs {c['against']} at the same batch, lr, weight decay and seed "
            f"({n} pair{'s' if n != 1 else ''}): median top-eigenvalue ratio "
            f"{c['top_eigenvalue_ratio']:.2f} (flatter in {c['flatter_top_eigenvalue']} of {n}"
            f"{p('flatter_p')}), median test-error change "
            f"{100 * c['test_error_change']:+.1f} points (lower in {c['lower_test_error']} of "
            f"{n}{p('lower_test_error_p')}).")


def _tracks_lr(c: dict[str, Any]) -> str:
    """A note when a measure follows the lr more closely than the gap."""
    lr, gap = abs(c["tau_vs_lr"]), abs(c["kendall_tau"])
    if math.isfinite(lr) and math.isfinite(gap) and lr > gap + 0.2:
        return " (it tracks the lr more than the gap)"
    return ""


def flat_sharp_command(summary: Mapping[str, Any], out: str | Path) -> str | None:
    """The ``landscape compare`` command of the flattest and the sharpest run by top
    eigenvalue (runs that diverged, were left out as not trained or have no finite top
    eigenvalue are skipped); None with fewer
    than two such runs. A grid of coarse measures gets ``--quick``."""
    ranked = sorted((r for r in summary["runs"] if not r.get("diverged")
                     and not r.get("left_out")
                     and _finite(r["measures"].get("top_eigenvalue"))),
                    key=lambda r: r["measures"]["top_eigenvalue"])
    if len(ranked) < 2:
        return None
    out = Path(out)
    quick = " --quick" if summary.get("coarse") else ""
    return (f"landscape compare {out / 'runs' / ranked[0]['name']} "
            f"{out / 'runs' / ranked[-1]['name']} --labels flattest,sharpest{quick} "
            f"--out {out / 'compare_flat_sharp'}")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def write_report(summary: dict[str, Any], out: Path) -> dict[str, str]:
    """The scatter grid, the tau chart and ``report.md`` (findings, tables, coarse measures
    marked, and the ``landscape compare`` line of the flattest and sharpest runs).

    Returns:
        ``{"scatter", "tau", "report"}`` -> path.
    """
    from ..figures import plot_measure_grid, plot_tau_bars

    files = {"scatter": plot_measure_grid(summary, out / "figures" / "measures_vs_gap.png"),
             "tau": plot_tau_bars(summary, out / "figures" / "tau.png")}
    coarse = summary.get("coarse") or {}
    mark = lambda name: f"{name} (coarse)" if name in coarse else name  # noqa: E731
    fmt = lambda v: "n/a" if v is None or v != v else f"{v:+.2f}"  # noqa: E731
    lines = ["# Does flatness predict generalization here?", "",
             *[f"- {f}" for f in summary["findings"]], "",
             "| measure | tau (gap) | 95% interval | granulated | tau (lr) |",
             "|---|---|---|---|---|"]
    lines += [f"| {mark(n)} | {fmt(c['kendall_tau'])} | {fmt(c['interval'][0])} .. "
              f"{fmt(c['interval'][1])} | {fmt(c['granulated_tau'])} | {fmt(c['tau_vs_lr'])} |"
              for n, c in summary["correlations"].items()]
    if coarse:
        lines += ["", "Coarse (quick) measures, cheaper than the defaults:", "",
                  *[f"- {name}: {note}" for name, note in coarse.items()]]
    lines += ["", "![measures vs gap](figures/measures_vs_gap.png)", "",
              "![tau](figures/tau.png)", "", "| run | train error | test error | gap | "
              f"{mark('top_eigenvalue')} |", "|---|---|---|---|---|"]
    lines += [f"| {r['name']}{' (left out)' if r.get('left_out') else ''} | {_pct(r['train_error'])} | {_pct(r['test_error'])} | "
              f"{_pct(r['generalization_gap'])} | {r['measures']['top_eigenvalue']:.3g} |"
              for r in summary["runs"] if not r.get("diverged")]
    command = flat_sharp_command(summary, out)
    if command:
        lines += ["", "The flattest and the sharpest run (top eigenvalue) side by side:", "",
                  f"    {command}"]
    write_bytes(out / "report.md", ("\n".join(lines) + "\n").encode())
    return {**{k: str(v) for k, v in files.items()}, "report": str(out / "report.md")}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"
