"""Interactive 3-D scenes as self-contained HTML (PyVista's vtk.js export), the notebook view,
and ``landscape render --html``: what the files hold and how bad input is refused.

What a browser makes of the pages is in test_browser.py.
"""
from __future__ import annotations

import base64
import dataclasses
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from browser import in_ci, require_module
from landscape import plot3d
from landscape.errors import LandscapeError
from landscape.store import save_surface
from landscape_cli.main import cli
from test_plot3d import double_well, funnel

pytest.importorskip("pyvista")
# without the web extra these skip on a developer's machine; in CI they run (and fail)
needs_web = pytest.mark.skipif(plot3d.web_export_missing() is not None and not in_ci(),
                               reason=str(plot3d.web_export_missing()))


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def scene_data(page: str) -> dict:
    """The vtk.js scene a page carries (PyVista's export: a base64 zip of index.json)."""
    raw = re.search(r'base64Str = "([^"]+)"', page).group(1)
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(raw))) as z:
        return json.loads(z.read("index.json"))


def page_config(page: str) -> dict:
    raw = re.search(r"<script type='application/json' id='landscape-scene'>(.*?)</script>",
                    page, re.S).group(1)
    return json.loads(raw.replace("<\\/", "</"))


def mappers(node) -> list[dict]:
    found = []
    if isinstance(node, dict):
        if str(node.get("type", "")).endswith("Mapper"):
            found.append(node)
        for value in node.values():
            found += mappers(value)
    elif isinstance(node, list):
        for value in node:
            found += mappers(value)
    return found


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    t = np.linspace(0, 1, 9)
    sharp = dataclasses.replace(
        double_well(21, 17), trajectory={"coords": np.column_stack([-0.8 + 0.8 * t,
                                                                    0.5 * (1 - t)])},
        anchors={"coords": np.array([[0.0, 0.0], [0.5, 0.0]]),
                 "labels": np.array(["a.pt", "b.pt"])})
    paths = {"flat": save_surface(root / "flat.h5", funnel(21)),
             "sharp": save_surface(root / "sharp.h5", sharp),
             "line": root / "line.h5"}
    line = funnel(21)
    save_surface(paths["line"], type(line)(x=line.x, y=None,
                                           metrics={"train_loss": line.metrics["train_loss"][:, 3]},
                                           done=np.ones(21, bool)))
    return paths


@needs_web
def test_page_is_self_contained_and_carries_both_surfaces(tmp_path):
    out = plot3d.export_html([funnel(21), double_well(21, 17)], tmp_path / "scene.html",
                             labels=["small batch", "large batch"], log=True)
    page = out.read_text()
    assert out.stat().st_size > 500_000  # vtk.js itself is embedded
    # nothing is loaded from elsewhere, and the page forbids it
    assert not re.search(r"""<(script|link|img|iframe)[^>]+(src|href)\s*=\s*["']?https?:""", page,
                         re.I)
    assert "kitware.github.io/vtk-js/icon" not in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert "<title>small batch vs large batch: train loss (3-D)</title>" in page
    assert "small batch</div>" in page and "large batch</div>" in page
    config = page_config(page)
    assert config["panels"] == 2 and config["meshes"] == 2
    # the height axis is labelled in heights: log(loss + 0.1) spans about -2.1 .. 3.3
    labels = [float(label) for _, label in config["z_ticks"]]
    assert min(labels) >= -2.2 and max(labels) <= 3.3 and len(labels) >= 3
    # colours are baked per point from the shared log scale: the same RGB as the colour map
    coloured = [m for m in mappers(scene_data(page)) if m["properties"]["colorMode"] == 2]
    assert len(coloured) >= 2
    assert all(m["properties"]["colorByArrayName"] == "rgb" for m in coloured)


@needs_web
def test_colours_follow_the_shared_scale(tmp_path):
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm

    flat, sharp = funnel(9), double_well(9, 7)
    plotter, page = plot3d.build_web_scene([flat, sharp], log=True, contours=None,
                                            zmax=float("inf"))  # no cap: the whole range
    try:
        import pyvista as pv

        data = [actor.mapper.GetInput() for renderer in plotter.renderers
                for actor in renderer.actors.values()
                if getattr(actor, "mapper", None) is not None and actor.mapper.GetColorMode() == 2]
        assert len(data) == 2  # one surface each (no contour lines asked for)

        lo = min(flat.metrics["train_loss"].min(), sharp.metrics["train_loss"].min())
        hi = max(flat.metrics["train_loss"].max(), sharp.metrics["train_loss"].max())
        for mesh in map(pv.wrap, data):
            expected = colormaps["viridis"](LogNorm(lo, hi)(mesh.point_data["color"]))[:, :3]
            np.testing.assert_allclose(mesh.point_data["rgb"] / 255, expected, atol=0.003)
    finally:
        plotter.close()
    assert page["colorbar"]["ticks"] and page["legend"] == []


@needs_web
def test_trajectories_and_anchors_are_drawn(files, tmp_path):
    from landscape.store import load_surface

    sharp = load_surface(files["sharp"])
    plotter, _ = plot3d.build_web_scene(sharp)
    try:
        drawn = colours_of(plotter)
        assert drawn.count("#d62728") == 2  # the path and its end point
        assert drawn.count("#000000") == 2 + 1  # the two anchors, the contour lines
    finally:
        plotter.close()
    plotter, _ = plot3d.build_web_scene(sharp, anchors=False, trajectories=[None])
    try:
        drawn = colours_of(plotter)
        assert drawn.count("#d62728") == 0 and drawn.count("#000000") == 1
    finally:
        plotter.close()


def colours_of(plotter) -> list[str]:
    """The plain colour of every actor that draws a mesh."""
    return [actor.prop.color.hex_rgb.lower() for actor in plotter.renderers[0].actors.values()
            if getattr(actor, "mapper", None) is not None and not actor.mapper.GetScalarVisibility()
            and actor.mapper.GetInput().GetNumberOfPoints() > 0]


@needs_web
def test_export_contacts_no_other_machine(tmp_path):
    """The export starts a trame server on 127.0.0.1; nothing else is looked up or
    connected to (trame-vtklocal would download its WebAssembly runtime)."""
    import subprocess
    import sys

    code = f"""
import gc, socket, sys, time
sys.path.insert(0, {str(Path(__file__).parent)!r})
seen = []
real_lookup, real_connect = socket.getaddrinfo, socket.socket.connect
def lookup(host, *args, **kwargs):
    seen.append(str(host))
    return real_lookup(host, *args, **kwargs)
def connect(self, address):
    seen.append(str(address[0]) if isinstance(address, tuple) else str(address))
    return real_connect(self, address)
socket.getaddrinfo, socket.socket.connect = lookup, connect
from test_plot3d import funnel
from landscape import plot3d
plot3d.export_html(funnel(9), {str(tmp_path / 'scene.html')!r})
time.sleep(1.0)
gc.collect()
print('SEEN', [h for h in seen if h not in ('127.0.0.1', 'localhost', '::1')])
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "SEEN []" in done.stdout, done.stdout + done.stderr[-2000:]
    assert "Task exception was never retrieved" not in done.stderr
    assert (tmp_path / "scene.html").stat().st_size > 500_000


@needs_web
def test_render_html_from_the_command_line(files, tmp_path):
    out = tmp_path / "scene.html"
    result = run("render", files["flat"], files["sharp"], "--html", out, "--log",
                 "--labels", "flat,sharp", "--title", "two minima")
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stderr
    page = out.read_text()
    assert page_config(page)["panels"] == 2 and "two minima" in page
    assert [p.name for p in tmp_path.iterdir()] == ["scene.html"]  # no temporary left over


@needs_web
def test_bad_html_output_is_one_line_and_writes_nothing(files, tmp_path):
    from cli_helpers import one_line_error

    html = tmp_path / "scene.html"
    assert "1-D surface" in one_line_error(run("render", files["line"], "--html", html))
    assert "unknown web page format '.png'" in one_line_error(
        run("render", files["flat"], "--html", tmp_path / "scene.png"))
    assert "is a file, not a folder" in one_line_error(
        run("render", files["flat"], "--html", files["flat"] / "scene.html"))
    assert "is a directory" in one_line_error(run("render", files["flat"], "--html", tmp_path),
                                              code=2)
    # a bad --html stops the other outputs too
    assert "unknown web page format" in one_line_error(
        run("render", files["flat"], "--out", tmp_path / "r.png", "--html", tmp_path / "s.txt"))
    missing = run("render", tmp_path / "nope.h5", "--html", html)
    assert missing.exit_code == 2 and "does not exist" in missing.output
    assert "Traceback" not in missing.output
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_is_refused_before_any_work(tmp_path, monkeypatch):
    import os

    target = tmp_path / "locked" / "deeper" / "scene.html"
    (tmp_path / "locked").mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).endswith("locked")
                        else real(p, mode))
    with pytest.raises(LandscapeError, match="no permission to write in"):
        plot3d.check_writable(target)
    with pytest.raises(LandscapeError, match="no permission to write in"):
        plot3d.export_html(funnel(9), target)
    assert not (tmp_path / "locked" / "deeper").exists()


@needs_web
def test_library_refusals_write_nothing(files, tmp_path):
    from landscape.store import load_surface

    with pytest.raises(LandscapeError, match="2-D"):
        plot3d.export_html(load_surface(files["line"]), tmp_path / "s.html")
    with pytest.raises(LandscapeError, match="unknown web page format"):
        plot3d.export_html(funnel(9), tmp_path / "s.svg")
    with pytest.raises(LandscapeError, match="no surfaces"):
        plot3d.export_html([], tmp_path / "s.html")
    assert list(tmp_path.iterdir()) == []


def test_missing_web_packages_give_one_clear_line(files, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "trame_vtk" else real(name, *a))
    message = plot3d.web_export_missing()
    assert "trame-vtk" in message and "landscape-minima[web]" in message
    with pytest.raises(LandscapeError, match="trame-vtk"):
        plot3d.export_html(funnel(9), tmp_path / "s.html")
    result = run("render", files["flat"], "--html", tmp_path / "s.html")
    assert result.exit_code == 1 and "--html: the interactive HTML scene needs trame-vtk" in \
        result.stderr
    # the notebook view falls back to the image
    view = plot3d.render_surface(funnel(9), size=(160, 120), notebook=True)
    assert view.html is None and "trame-vtk" in view.note
    bundle = view._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "image/png"}
    with pytest.raises(LandscapeError, match="trame-vtk"):
        plot3d.render_surface(funnel(9), size=(160, 120), notebook="interactive")
    assert list(tmp_path.iterdir()) == []


@needs_web
def test_notebook_view_is_interactive_with_an_image_fallback():
    import landscape

    view = landscape.render_surface([funnel(9), double_well(9, 7)], size=(200, 150),
                                    labels=["a", "b"], log=True, notebook=True)
    assert isinstance(view, plot3d.SceneView) and view.image.shape == (150, 2 * 200 + 110, 3)
    bundle = view._repr_mimebundle_()
    assert bundle["text/html"].startswith("<iframe srcdoc=\"") and "&lt;script" in \
        bundle["text/html"]
    png = base64.b64decode(bundle["image/png"])
    assert png.startswith(b"\x89PNG")
    assert "interactive" in bundle["text/plain"]
    static = landscape.render_surface(funnel(9), size=(200, 150), notebook="static")
    assert static.html is None and set(static._repr_mimebundle_()) == {"text/plain", "image/png"}
    with pytest.raises(LandscapeError, match="notebook="):
        landscape.render_surface(funnel(9), notebook="maybe")
    assert landscape.export_html is plot3d.export_html


@needs_web
@pytest.mark.slow
def test_walkthrough_notebook_runs_top_to_bottom(tmp_path):
    """examples/study_walkthrough.ipynb under nbclient, in a scratch folder (well under a
    minute of computing: small settings)."""
    import time

    nbformat = require_module("nbformat")
    nbclient = require_module("nbclient")
    require_module("ipykernel")
    path = Path(__file__).parents[2] / "examples" / "study_walkthrough.ipynb"
    notebook = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code"), \
        "commit the notebook without outputs"
    start = time.perf_counter()  # the kernel shares the session's dataset cache (conftest)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    seconds = time.perf_counter() - start
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o for o in outputs if "text/html" in o.get("data", {})
            and "<iframe srcdoc=" in o["data"]["text/html"]]
    assert html and all("image/png" in o["data"] for o in html)  # interactive + the image
    assert (tmp_path / "walkthrough" / "report.html").exists()
    assert (tmp_path / "walkthrough" / "figures" / "surface_3d.html").exists()
    assert seconds < 600, f"the walkthrough took {seconds:.0f} s"
