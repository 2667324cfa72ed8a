"""Progress bars for long work: count, rate and time left on stderr, or nothing at all.

On a terminal a tqdm bar redraws itself in place. When stderr is not a terminal (a log file,
a pipe) a redrawn bar would be written out in full at every redraw, so there is instead one
plain line at each tenth of the work (``LineProgress``), and none for work of unknown length.
``tqdm`` is imported when a bar is made, not when this module is.
"""
from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def progress(total: int | None, desc: str, enabled: bool = True, unit: str = "it"):
    """A progress bar on stderr: tqdm (count, rate, time left) on a terminal, one line per
    tenth of the work elsewhere; silent when ``enabled`` is False."""
    stream = sys.stderr
    if enabled and not _is_terminal(stream):
        return LineProgress(total, desc, unit, stream)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, unit=unit, leave=False,
                dynamic_ncols=True, file=stream)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class LineProgress:
    """tqdm's ``update``/``set_postfix``/``close`` for a stream that is not a terminal: a first
    line ``desc: 0% (0/10 unit)``, then ``desc: 30% (3/10 unit, 1.2 unit/s, 5 s left)`` each
    time another tenth is done; nothing when ``total`` is unknown."""

    STEPS = 10

    def __init__(self, total: int | None, desc: str, unit: str, stream: TextIO):
        self.total, self.desc, self.unit, self.stream = total, desc, unit, stream
        self.n, self.postfix, self._shown = 0, "", 0
        self._start = time.monotonic()
        if total:
            self._print(f"{desc}: 0% (0/{total} {unit})")

    def update(self, n: int = 1) -> None:
        """Count ``n`` more done; write a line if another tenth is reached."""
        self.n += n
        if not self.total:
            return
        tenth = min(self.STEPS, self.n * self.STEPS // self.total)
        if tenth > self._shown:
            self._shown = tenth
            self._write()

    def set_postfix(self, **values: Any) -> None:
        """Values shown at the end of the next line (as tqdm's postfix)."""
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        """Nothing to clear: every line is complete."""

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _write(self) -> None:
        elapsed = time.monotonic() - self._start
        rate = self.n / elapsed if elapsed > 0 else float("nan")
        left = (self.total - self.n) / rate if rate > 0 else float("nan")
        text = (f"{self.desc}: {100 * self.n // self.total}% ({self.n}/{self.total} "
                f"{self.unit}, {rate:.3g} {self.unit}/s, {left:.0f} s left)")
        if self.postfix:
            text += f" {self.postfix}"
        self._print(text)

    def _print(self, text: str) -> None:
        try:
            print(text, file=self.stream, flush=True)
        except (OSError, ValueError):
            pass  # a closed log stream must not stop the work
