"""Progress bars for long work: count, rate and time left on stderr, or nothing at all.

``tqdm`` is imported when a bar is made, not when this module is.
"""
from __future__ import annotations

import sys


def progress(total: int | None, desc: str, enabled: bool = True, unit: str = "it"):
    """A tqdm progress bar on stderr (count, rate, time left); silent when ``enabled`` is False."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, unit=unit, leave=False,
                dynamic_ncols=True, file=sys.stderr)
