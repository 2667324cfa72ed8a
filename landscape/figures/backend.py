"""The 3-D backend: whether a window can open here, and PyVista loaded on first use.

PyVista (and VTK) are imported only by ``load_pyvista``, so importing the figure modules
stays cheap; without a display VTK is asked for an offscreen EGL window.
"""
from __future__ import annotations

import os
import sys


def has_display() -> bool:
    """True when an interactive window can be opened (always assumed off Linux)."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _load_compiler_first() -> None:
    """Load torch's compiler stack (and with it triton's LLVM) before the first render.

    torch imports it lazily, e.g. when the first optimizer is built; if that happens after
    OpenGL (Mesa, with its own LLVM) is loaded in the same process, the process crashes.
    """
    try:
        import torch._dynamo  # noqa: F401
    except Exception:  # no compiler stack: nothing can clash with it
        pass


def load_pyvista():
    """Import PyVista; without a display, ask VTK for an EGL window first (no X11 warning)."""
    if "vtkmodules" not in sys.modules and not has_display():
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    _load_compiler_first()
    import pyvista as pv

    return pv
