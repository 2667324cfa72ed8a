"""Output files of the figures: which formats exist, which can be written on this machine,
and writing a file so that it appears whole or not at all.

Checks here run before any drawing, so a bad output name fails in one line with nothing
written. Nothing here imports matplotlib or PyVista.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Sequence

from ..util import atomic_path
from ..errors import LandscapeError

#: formats of the 2-D figures (matplotlib)
FORMATS = ("png", "pdf", "svg")
#: suffixes of a 3-D picture, an orbit animation and the interactive web page
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MOVIE_SUFFIXES = (".gif", ".mp4")
HTML_SUFFIXES = (".html", ".htm")
#: import name -> pip name of what PyVista's web export (trame, vtk.js) needs
WEB_PACKAGES = {"trame_pyvista": "trame-pyvista", "trame_vtk": "trame-vtk",
                "nest_asyncio2": "nest_asyncio2"}


def figure_format(path: str | os.PathLike) -> str:
    """The image format named by ``path``'s suffix.

    Args:
        path: output file name ending in .png, .pdf or .svg.

    Returns:
        "png", "pdf" or "svg".

    Raises:
        LandscapeError: for any other suffix.
    """
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise LandscapeError(f"{path}: unknown figure format {Path(path).suffix or '(none)'!r}; "
                             f"use one of {', '.join('.' + f for f in FORMATS)}")
    return fmt


@contextlib.contextmanager
def atomic_suffixed(path: str | os.PathLike) -> Iterator[Path]:
    """Like ``atomic_path`` but the temporary file keeps ``path``'s suffix.

    Writers that pick the format from the file name (VTK, imageio) then write the right one;
    the file appears under ``path`` only when the block succeeds.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        real = tmp.with_name(tmp.name + path.suffix)
        try:
            yield real
            os.replace(real, tmp)
        finally:
            if real.exists():
                real.unlink()


def mp4_writer() -> str | None:
    """The imageio plugin that can write MP4 here ("pyav" or "FFMPEG"), or None."""
    from importlib.util import find_spec

    if find_spec("av") is not None:
        return "pyav"
    if find_spec("imageio_ffmpeg") is not None:
        return "FFMPEG"
    return None


def check_figure_path(path: str | os.PathLike, allowed: Sequence[str], what: str) -> Path:
    """``path`` as a Path if its suffix is one of ``allowed``; else a clear LandscapeError.

    MP4 is refused here, before any work, when no MP4 writer is installed.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise LandscapeError(f"{path}: unknown {what} format {path.suffix or '(none)'!r}; "
                             f"use one of {', '.join(allowed)}")
    if suffix == ".mp4" and mp4_writer() is None:
        raise LandscapeError(f"{path}: MP4 needs the imageio-ffmpeg or av package, and neither "
                             "is installed (pip install imageio-ffmpeg); GIF works without them")
    return path


def web_export_missing() -> str | None:
    """None when the interactive HTML export can run here; else one line saying what to
    install."""
    from importlib.util import find_spec

    missing = [pip for name, pip in WEB_PACKAGES.items() if find_spec(name) is None]
    if not missing:
        return None
    return (f"the interactive HTML scene needs {', '.join(missing)} (pip install "
            "'landscape-minima[web]')")
