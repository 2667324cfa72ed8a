"""Compare minima that already exist: the study's measurements, figures and report for two or
more checkpoints (``landscape compare``). ``landscape demo`` trains its two runs and then
compares them here, so both share this one path.

``compare(checkpoints, out_dir)`` writes, under ``out_dir``: ``models/<name>/`` for each
minimum (its directions, 1-D and 2-D surfaces, ``curvature.json``, ``sharpness.json``, the
slice along its top eigenvector), ``surfaces/*.h5`` (interpolation between the first two,
the plane through the first three, the curve), ``figures/*.png``, ``summary.json``,
``report.md`` and ``report.html``. The folder is locked for the run (``output_lock``): a
second compare, study or sweep writing into it is refused at once, naming the holder. Each
step records a key of what it depends on (the weights, the data, the settings) and the hashes
of its outputs in ``study_state.json``; a re-run skips steps whose key and outputs are
unchanged, computes again (with one warning line) a step whose output was damaged, and an
interrupted one resumes with the first unfinished step (see ``landscape.workflows.steps``).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..data import DataBundle
from ..util import output_lock
from .config import CompareConfig
from .inputs import compare_data, load_minima
from .measurements import has_v_versus_w, measure
from .result import StudyResult, finish
from .steps import Clock, Stages, Steps

__all__ = ["compare"]


def compare(checkpoints: Sequence[str | Path], out_dir: str | Path = "compare", *,
            config: CompareConfig = CompareConfig(), labels: Sequence[str] | None = None,
            data: DataBundle | Mapping[str, Any] | None = None, force: bool = False,
            progress: bool = True, log: Callable[[str], None] | None = print) -> StudyResult:
    """Measure, draw and report two or more minima you already have.

    Around each: interpolation (first to second), 1-D and 2-D filter-normalized surfaces,
    Hessian eigenvalues, trace and spectral density, sharpness, the slice along its top
    eigenvector and its basin shape; with three or more, the plane through the first three
    (how many basins, the barriers between them); with ``config.curve_epochs``, a trained
    curve between the first two against the straight line.

    Args:
        checkpoints: checkpoint files or ``landscape train`` run folders (their model.pt),
            of one architecture; the first is the reference of ratios.
        out_dir: folder for every output; steps already done there are reused.
        config: what to measure (``CompareConfig()`` as the demo, ``.quick()`` coarse).
        labels: names in figures and the report (default: run folder or file names).
        data: a DataBundle, or keyword arguments of ``load_dataset`` (default: the dataset the
            first checkpoint records, as it was trained).
        force: recompute every step.
        progress: show progress bars of the long steps.
        log: called with one line per step (None: silent).

    Returns:
        StudyResult with the summary and the paths written.
    """
    start = time.perf_counter()
    minima, dataset = load_minima(checkpoints, labels)
    data = compare_data(data, dataset)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with output_lock(out):  # a second writer of this folder is refused at once
        say = Stages(log, 5 + has_v_versus_w(config, minima)
                     + (len(minima) >= 3))
        steps, clock = Steps(out, force), Clock()
        summary, figures, scenes = measure(config, data, minima, out, steps, clock, say,
                                           progress)
        return finish(summary, figures, scenes, out, steps, clock, start)
