"""The end of a comparison or study: ``finish`` records the figures, timings and reused steps
in the summary, writes ``summary.json`` and the report, and returns a ``StudyResult``.

``compare`` and ``run_study`` both end here, so both return the same ``StudyResult``; it sits
below either of them (the study builds on the comparison, not the other way round).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from .report import write_report
from .steps import Clock, Steps

__all__ = ["StudyResult", "finish"]


@dataclasses.dataclass(frozen=True)
class StudyResult:
    """What ``compare`` or ``run_study`` produced.

    Attributes:
        summary: the content of ``summary.json``.
        out_dir: the output folder.
        files: name -> path of the main outputs (report, summary, figures).
        reused: steps skipped because their outputs were up to date.
        seconds: wall time.
    """

    summary: dict[str, Any]
    out_dir: Path
    files: dict[str, Path]
    reused: tuple[str, ...]
    seconds: float


def finish(summary: dict[str, Any], figures: dict[str, Path], scenes: dict[str, Path],
           out: Path, steps: Steps, clock: Clock, start: float) -> StudyResult:
    """Record figures, timings and reuse in the summary; write it and the report.

    Args:
        summary: the measurements' summary (see ``measure``); completed in place.
        figures, scenes: name -> path of the figures and interactive pages, under ``out``.
        out: the output folder.
        steps, clock: the run's step record and step timings.
        start: ``time.perf_counter()`` at the start of the run.

    Returns:
        The StudyResult.
    """
    summary["figures"] = {k: str(p.relative_to(out)) for k, p in figures.items()}
    summary["scenes"] = {k: str(p.relative_to(out)) for k, p in scenes.items()}
    summary["step_seconds"] = clock.seconds
    summary["seconds"] = time.perf_counter() - start
    summary["reused_steps"] = list(steps.reused)
    files = write_report(summary, out)
    files.update({f"figure_{k}": p for k, p in figures.items()})
    files.update({f"scene_{k}": p for k, p in scenes.items()})
    return StudyResult(summary=summary, out_dir=out, files=files, reused=tuple(steps.reused),
                       seconds=summary["seconds"])
