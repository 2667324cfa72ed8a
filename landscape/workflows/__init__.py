"""Workflows: the measurements of many minima, end to end, with figures and a report.

Modules, lower first: ``steps`` (the engine: keyed, cached, resumable steps, timings,
progress lines); ``inputs`` (minima and data) and ``config`` (what is measured);
``summary`` (the numbers of ``summary.json``), ``draw`` (figures), ``document`` and
``report`` (Markdown and HTML); ``measurements`` (every step of a comparison); ``result``
(``finish``, ``StudyResult``); the entry points ``comparison`` (``compare``), ``study``
(``run_study``), ``sweep`` (``run_sweep``, with ``sweep_report``) and ``recipes``
(``run_recipes``: a grid of training recipes, each trained and measured, and the rank
correlation of each flatness measure with the generalization gap). Importing this package
loads no plotting library: figures import matplotlib and pyvista when they draw.
"""
from __future__ import annotations

from .comparison import compare
from .config import CompareConfig
from .document import provenance_line, render_html, render_markdown, write_document
from .draw import draw_figures, draw_scenes, shared_densities, vw_figures
from .inputs import Minimum, compare_data, load_minima, load_setup, open_run, slug
from .measurements import EIGEN_STEP, has_v_versus_w, measure, v_versus_w
from .report import (SCENE_CAPTION, findings, study_blocks, table_header, table_rows,
                     v_versus_w_blocks, v_versus_w_rows, write_report)
from .result import StudyResult, finish
from .steps import STATE_FILE, Clock, Stages, Steps, step_key
from .study import LABELS, RunSpec, StudyConfig, run_study
from .summary import summarize, vw_summary
from .sweep import SweepConfig, SweepRun, observations, run_sweep
from .sweep_report import write_sweep_report
from .recipes import RecipeGrid, parse_shard, run_name, run_recipes
from .recipes_report import flat_sharp_command

__all__ = [
    # entry points and their settings
    "compare", "CompareConfig", "run_study", "StudyConfig", "RunSpec", "LABELS", "StudyResult",
    "run_sweep", "SweepConfig", "SweepRun", "observations",
    "run_recipes", "RecipeGrid", "parse_shard", "run_name", "flat_sharp_command",
    # the step engine
    "Steps", "Clock", "Stages", "step_key", "STATE_FILE",
    # inputs
    "Minimum", "slug", "load_minima", "compare_data", "load_setup", "open_run",
    # measurements and their summary
    "measure", "has_v_versus_w", "v_versus_w", "EIGEN_STEP", "summarize", "vw_summary",
    "finish",
    # figures and reports
    "draw_figures", "vw_figures", "draw_scenes", "shared_densities", "write_report",
    "table_header", "table_rows", "findings", "study_blocks", "v_versus_w_blocks",
    "v_versus_w_rows", "SCENE_CAPTION", "write_sweep_report", "write_document",
    "render_markdown", "render_html", "provenance_line",
]
