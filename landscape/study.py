"""Deprecated location, kept for one release: use landscape.workflows.

Re-exports what code and tests import from ``landscape.study`` today.
"""
from __future__ import annotations

from .workflows.inputs import load_setup
from .workflows.inputs import open_run as _open
from .workflows.result import StudyResult
from .workflows.study import LABELS, RunSpec, StudyConfig, run_study

__all__ = ["RunSpec", "StudyConfig", "StudyResult", "run_study", "load_setup", "LABELS"]
