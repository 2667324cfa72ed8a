"""Deprecated location, kept for one release: use landscape.workflows.

Re-exports what code and tests import from ``landscape.sweep`` today.
"""
from __future__ import annotations

from .workflows.sweep import SweepConfig, SweepRun, observations, run_sweep

__all__ = ["SweepRun", "SweepConfig", "run_sweep", "observations"]
