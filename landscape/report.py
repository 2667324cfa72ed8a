"""Deprecated location, kept for one release: use landscape.workflows.

Re-exports what code and tests import from ``landscape.report`` today.
"""
from __future__ import annotations

from .workflows.document import provenance_line, render_html, render_markdown, write_document
from .workflows.report import (SCENE_CAPTION, findings, study_blocks, table_header, table_rows,
                               v_versus_w_blocks, v_versus_w_rows, write_report)

__all__ = ["table_header", "table_rows", "findings", "SCENE_CAPTION", "study_blocks",
           "v_versus_w_blocks", "v_versus_w_rows", "provenance_line", "render_markdown",
           "render_html", "write_document", "write_report"]
