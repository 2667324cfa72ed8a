"""Rendered outputs of a 3-D scene: an image (PNG, JPEG), an orbit animation (GIF, MP4),
an interactive window where a display exists, and ``SceneView``, which Jupyter shows as the
interactive page (vtk.js, offline) or as the image.

Every output name is checked before any rendering, and files are written atomically.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import LandscapeError
from ..surface import Surface
from .backend import has_display
from .outputs import (IMAGE_SUFFIXES, MOVIE_SUFFIXES, atomic_suffixed, check_figure_path,
                      mp4_writer, web_export_missing)
from .scene import build_scene
from .web import scene_html


def _write_image(img: np.ndarray, path: Path) -> None:
    import imageio.v3 as iio

    with atomic_suffixed(path) as tmp:
        iio.imwrite(tmp, img, extension=path.suffix.lower())


def render_surface(surfaces: Surface | Sequence[Surface], out: str | os.PathLike | None = None,
                   metric: str = "train_loss", *, size: tuple[int, int] = (900, 700),
                   show: bool = False, notebook: bool | str = False,
                   **scene: Any) -> "np.ndarray | SceneView":
    """Render surfaces offscreen to an image (and a PNG/JPEG file); optionally show a window.

    Args:
        surfaces: one 2-D surface or several (see ``build_scene``).
        out: save the screenshot here (.png, .jpg), atomically.
        metric: metric giving height and colour.
        size: pixels per panel (width, height).
        show: also open an interactive window (needs a display; LandscapeError otherwise).
        notebook: return a ``SceneView`` that Jupyter shows inline: True for the interactive
            scene (vtk.js, offline) where the web export is installed and the image
            elsewhere, "interactive" to insist on it, "static" for the image only.
        **scene: options of ``build_scene`` (labels, log, zmax, overlay, contours, ...).

    Returns:
        The image as an (H, W, 3) uint8 array; with ``notebook``, a ``SceneView`` holding it
        (``.image``).
    """
    if out is not None:
        out = check_figure_path(out, IMAGE_SUFFIXES, "image")
    if notebook:
        _check_notebook(notebook)
    if show and not has_display():
        raise LandscapeError("no display to open a window on (DISPLAY is not set); "
                             "save a screenshot with out=... instead")
    plotter = build_scene(surfaces, metric, size=size, off_screen=True, **scene)
    try:
        img = np.asarray(plotter.screenshot(return_img=True))
    finally:
        plotter.close()
    if out is not None:
        _write_image(img, out)
    if show:
        window = build_scene(surfaces, metric, size=size, off_screen=False, **scene)
        window.show()
    if notebook:
        return _scene_view(surfaces, metric, size, notebook, img, scene)
    return img


def orbit_animation(surfaces: Surface | Sequence[Surface], out: str | os.PathLike,
                    metric: str = "train_loss", *, frames: int = 36, fps: float = 12.0,
                    degrees: float = 360.0, size: tuple[int, int] = (640, 500),
                    **scene: Any) -> Path:
    """A camera orbit around the surfaces, written as GIF (or MP4 when a writer is installed).

    Args:
        surfaces: one 2-D surface or several (see ``build_scene``).
        out: .gif or .mp4 file (written atomically).
        metric: metric giving height and colour.
        frames: number of frames.
        fps: frames per second.
        degrees: total rotation.
        size: pixels per panel.
        **scene: options of ``build_scene``.

    Returns:
        The path written.

    Raises:
        LandscapeError: unknown suffix, or MP4 without imageio-ffmpeg / av installed.
    """
    out = check_figure_path(out, MOVIE_SUFFIXES, "animation")
    scene.setdefault("fill", 0.8)  # room for the corners as the surface turns
    if frames < 2:
        raise LandscapeError(f"an animation needs at least 2 frames, got {frames}")
    plotter = build_scene(surfaces, metric, size=size, off_screen=True, **scene)
    images = []
    try:
        for _ in range(frames):
            images.append(np.asarray(plotter.screenshot(return_img=True)))
            plotter.camera.Azimuth(degrees / frames)
            plotter.render()  # a screenshot alone shows the last rendered frame
    finally:
        plotter.close()
    _write_movie(images, out, fps)
    return out


def _write_movie(images: list[np.ndarray], out: Path, fps: float) -> None:
    import imageio.v3 as iio

    with atomic_suffixed(out) as tmp:
        if out.suffix.lower() == ".gif":
            iio.imwrite(tmp, np.stack(images), extension=".gif", duration=1000.0 / fps, loop=0)
            return
        stack = np.stack([_even(im) for im in images])  # H.264 wants even sizes
        if mp4_writer() == "pyav":
            iio.imwrite(tmp, stack, plugin="pyav", codec="libx264", fps=fps)
        else:
            import imageio.v2 as iio2
            iio2.mimwrite(tmp, list(stack), format="FFMPEG", fps=fps, codec="libx264",
                          macro_block_size=2, quality=8)


def _even(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


class SceneView:
    """A 3-D scene for Jupyter: interactive (vtk.js, offline) in front ends that show HTML,
    the rendered image elsewhere (nbconvert to PDF, GitHub, a terminal).

    Attributes:
        image: the rendered picture, an (H, W, 3) uint8 array.
        html: the interactive page (None for a static view).
        note: why the view is static, if it is.
    """

    def __init__(self, image: np.ndarray, html: str | None = None, note: str | None = None,
                 height: int = 560):
        self.image = image
        self.html = html
        self.note = note
        self.height = height

    def _png(self) -> bytes:
        import io

        import imageio.v3 as iio

        buffer = io.BytesIO()
        iio.imwrite(buffer, self.image, extension=".png")
        return buffer.getvalue()

    def _repr_png_(self) -> bytes:
        return self._png()

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        import base64
        import html as _html

        h, w = self.image.shape[:2]
        text = f"<3-D scene, {w}x{h} image" + (", interactive" if self.html else "") + ">"
        if self.note:
            text += f" ({self.note})"
        bundle: dict[str, Any] = {"text/plain": text,
                                  "image/png": base64.b64encode(self._png()).decode("ascii")}
        if self.html:
            bundle["text/html"] = (
                f"<iframe srcdoc=\"{_html.escape(self.html, quote=True)}\" "
                f"style=\"width:100%;height:{self.height}px;border:1px solid #ddd\" "
                "title=\"3-D scene\"></iframe>")
        return bundle


def _check_notebook(notebook: bool | str) -> None:
    if notebook not in (True, "interactive", "static"):
        raise LandscapeError(f"notebook={notebook!r}: use True (interactive where possible), "
                             "'interactive' or 'static'")
    if notebook == "interactive" and web_export_missing():
        raise LandscapeError(web_export_missing())


def _scene_view(surfaces, metric: str, size: tuple[int, int], notebook: bool | str,
                img: np.ndarray, scene: dict[str, Any]) -> SceneView:
    if notebook == "static":
        return SceneView(img)
    missing = web_export_missing()
    if missing:
        return SceneView(img, note=missing)
    web = {k: v for k, v in scene.items() if k not in ("fill",)}
    return SceneView(img, scene_html(surfaces, metric, **web), height=min(size[1], 720))
