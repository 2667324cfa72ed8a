"""Deprecated location, kept for one release: use landscape.workflows.

Re-exports what code and tests import from ``landscape.compare`` today. The measurements now
live in ``landscape.workflows.measurements``: patching a name here does not change them.
"""
from __future__ import annotations

from .evaluate import METRICS
from .workflows.comparison import compare
from .workflows.config import CompareConfig
from .workflows.draw import shared_densities as _shared_densities
from .workflows.draw import vw_figures
from .workflows.inputs import Minimum, load_minima, slug
from .workflows.measurements import EIGEN_STEP, has_v_versus_w, measure, v_versus_w
from .workflows.measurements import _curvature  # noqa: F401  (tests patch this name)
from .workflows.result import StudyResult, finish
from .workflows.steps import Clock, Stages, Steps
from .workflows.steps import step_key as _key
from .workflows.summary import vw_summary

__all__ = ["METRICS", "CompareConfig", "StudyResult", "Minimum", "slug", "load_minima",
           "compare", "Steps", "Clock", "Stages", "measure", "has_v_versus_w", "finish",
           "EIGEN_STEP", "v_versus_w", "vw_summary", "vw_figures"]
