"""The interactive 3-D scene in a real browser (headless Chromium, software WebGL): it opens
offline, fetches nothing, logs no error, and draws both surfaces.

The study's report.html is opened the same way in test_study.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from browser import colours, in_ci, open_page
from landscape import plot3d
from landscape.store import save_surface
from landscape_cli.main import cli
from test_plot3d import double_well, funnel

pytest.importorskip("pyvista")
if plot3d.web_export_missing() and not in_ci():  # the test extra installs it
    pytest.skip(plot3d.web_export_missing(), allow_module_level=True)

READY = "window.landscapeScene && window.landscapeScene.ready"
STATE = "JSON.stringify(window.landscapeScene)"
CAMERA = "JSON.stringify(window.global.renderWindow.getRenderers().filter(r => " \
         "r.getActors().length).map(r => r.getActiveCamera().getPosition()))"


def assert_offline_and_clean(result) -> None:
    assert result.errors == [], result.errors
    assert result.remote_requests == [], result.remote_requests


def test_scene_from_the_command_line_draws_both_surfaces(tmp_path):
    import json

    a = save_surface(tmp_path / "a.h5", funnel(41))
    b = save_surface(tmp_path / "b.h5", double_well(41, 41))
    out = tmp_path / "scene.html"
    result = CliRunner().invoke(cli, ["render", str(a), str(b), "--html", str(out), "--log",
                                      "--labels", "small batch,large batch"])
    assert result.exit_code == 0, result.output
    width = (1280 - 120) // 2  # the colour bar has the last 120 pixels
    page = open_page(out, width=1280, height=720, ready=READY, evaluate=(STATE, CAMERA),
                     drag=((width // 2, 360), (width // 2 + 150, 330)))
    assert_offline_and_clean(page)
    state = json.loads(page.values[STATE])
    assert state["renderers"] == 2 and state["linkedCameras"] and state["axes"] == 2
    shot = page.screenshot
    assert shot.shape == (720, 1280, 3)
    for panel in (shot[60:-40, :width], shot[60:-40, width:2 * width]):
        # a shaded, coloured surface: many colours, and not mostly white
        assert colours(panel) > 500
        assert (panel.min(axis=2) < 200).mean() > 0.15
    bar = shot[:, -120:]
    assert colours(bar) > 50  # the colour bar's gradient
    # dragging in the left panel turns both (one camera), and the colour bar stays
    before, after = json.loads(page.values[CAMERA]), json.loads(page.values_dragged[CAMERA])
    assert before[0] == before[1] and after[0] == after[1]
    assert np.linalg.norm(np.subtract(after[0], before[0])) > 0.1
    turned = page.dragged
    for k in (0, 1):
        panel = np.s_[60:-40, k * width:(k + 1) * width]
        assert np.abs(turned[panel].astype(int) - shot[panel]).mean() > 3
    np.testing.assert_array_equal(turned[:, -120:], bar)


def test_overlay_and_a_single_surface_open_cleanly(tmp_path):
    one = plot3d.export_html(double_well(21, 17), tmp_path / "one.html")
    both = plot3d.export_html([funnel(21), double_well(21, 17)], tmp_path / "both.html",
                              overlay=True, labels=["flat", "sharp"], title="overlaid")
    for path, renderers in ((one, 1), (both, 1)):
        page = open_page(path, width=900, height=600, ready=READY,
                         evaluate=("window.landscapeScene.renderers",))
        assert_offline_and_clean(page)
        assert page.values["window.landscapeScene.renderers"] == renderers
        assert colours(page.screenshot) > 500
