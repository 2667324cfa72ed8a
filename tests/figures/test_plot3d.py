"""3-D scenes rendered offscreen, animations and VTK export, on analytic V and W surfaces."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from landscape import plot3d
from landscape.errors import LandscapeError
from landscape.surface import Surface

pv = pytest.importorskip("pyvista")

SMALL = (240, 180)  # pixels per panel: enough to see, quick to render in software GL


def funnel(n: int = 17) -> Surface:
    x = np.linspace(-1, 1, n)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    return _surface(x, x, 0.05 + 1.2 * np.hypot(xx, yy), "flat_v")


def double_well(n: int = 17, m: int = 13) -> Surface:
    x = np.linspace(-1, 1, n)
    y = np.linspace(-0.8, 0.8, m)  # not square: catches a swapped axis
    xx, yy = np.meshgrid(x, y, indexing="ij")
    return _surface(x, y, 0.02 + 40 * (xx ** 2 - 0.25) ** 2 + 6 * yy ** 2, "sharp_w")


def _surface(x, y, loss, name) -> Surface:
    return Surface(x=x, y=y, metrics={"train_loss": loss, "train_acc": 1 / (1 + loss)},
                   done=np.ones(loss.shape, bool), provenance={"seed": 3}, path=f"{name}.h5")


def with_holes(surface: Surface, fraction: float = 0.2) -> Surface:
    done = np.random.default_rng(0).random(surface.shape) >= fraction
    metrics = {k: np.where(done, v, np.nan) for k, v in surface.metrics.items()}
    return Surface(surface.x, surface.y, metrics, done, path=surface.path)


def assert_real_image(img_or_path, size) -> np.ndarray:
    if isinstance(img_or_path, np.ndarray):
        rgb = img_or_path
    else:
        with Image.open(img_or_path) as im:
            rgb = np.asarray(im.convert("RGB"))
    assert (rgb.shape[1], rgb.shape[0]) == size
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 30
    assert rgb.std() > 10
    return rgb


def surface_actors(renderer):
    """Actors drawing a surface (polygons, not lines) coloured by the shared "color" array.

    A smooth-shaded mesh reaches the mapper as polygonal data.
    """
    out = []
    for actor in renderer.actors.values():
        data = getattr(getattr(actor, "mapper", None), "dataset", None)
        if data is not None and isinstance(data, pv.PolyData) and data.n_lines == 0 \
                and data.n_cells > 1 and "color" in data.point_data \
                and actor.mapper.scalar_visibility:
            out.append(actor)
    return out


def test_mesh_points_and_values_follow_the_grid():
    s = double_well()
    mesh = plot3d.surface_mesh(s, log=True, zmax=5.0)
    assert isinstance(mesh, pv.StructuredGrid) and mesh.dimensions == (17, 13, 1)
    loss = s.metrics["train_loss"]
    for i, j in [(0, 0), (3, 7), (16, 12), (8, 2)]:
        k = int(np.argmin(np.hypot(mesh.points[:, 0] - s.x[i], mesh.points[:, 1] - s.y[j])))
        assert mesh.point_data["train_loss"][k] == loss[i, j]
        expected = np.log(min(loss[i, j], 5.0) + 0.1)
        assert mesh.points[k, 2] == pytest.approx(expected)
        assert mesh.point_data["height"][k] == pytest.approx(expected)
    assert json.loads(mesh.field_data["provenance"][0]) == {"seed": 3}


def test_vtk_export_reads_back_with_the_same_values(tmp_path):
    s = with_holes(double_well())
    out = plot3d.export_vtk(s, tmp_path / "surface.vts")
    back = pv.read(out)
    assert isinstance(back, pv.StructuredGrid) and back.n_points == 17 * 13
    xx, yy = np.meshgrid(s.x, s.y, indexing="ij")
    np.testing.assert_array_equal(back.points[:, 0], xx.ravel(order="F"))
    np.testing.assert_array_equal(back.points[:, 1], yy.ravel(order="F"))
    for name in ("train_loss", "train_acc"):
        np.testing.assert_array_equal(back.point_data[name], s.metrics[name].ravel(order="F"))
    np.testing.assert_array_equal(back.point_data["done"].astype(bool), s.done.ravel(order="F"))
    assert np.isfinite(back.points).all()  # points not computed still have a place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["surface.vts"]
    with pytest.raises(LandscapeError, match="unknown VTK surface format '.vtu'"):
        plot3d.export_vtk(s, tmp_path / "surface.vtu")


def test_trajectory_export_lies_on_the_surface(tmp_path):
    s = double_well()
    path = np.array([[s.x[0], s.y[0]], [s.x[4], s.y[6]], [s.x[8], s.y[12]]])
    out = plot3d.export_trajectory_vtk(s, tmp_path / "path.vtp", path, zmax=8.0)
    back = pv.read(out)
    assert isinstance(back, pv.PolyData) and back.n_points == 3 and back.n_lines == 1
    np.testing.assert_allclose(back.points[:, :2], path)
    loss = s.metrics["train_loss"]
    expected = [min(loss[0, 0], 8.0), min(loss[4, 6], 8.0), min(loss[8, 12], 8.0)]
    np.testing.assert_allclose(back.points[:, 2], expected, rtol=1e-6)
    np.testing.assert_array_equal(back.point_data["step"], [0, 1, 2])
    with pytest.raises(LandscapeError, match="carries no training path"):
        plot3d.export_trajectory_vtk(s, tmp_path / "none.vtp")


def test_render_offscreen_png(tmp_path):
    out = tmp_path / "surface.png"
    img = plot3d.render_surface(double_well(), out, size=SMALL, log=True)
    assert_real_image(img, (SMALL[0] + 110, SMALL[1]))  # plus the colour-bar column
    np.testing.assert_array_equal(assert_real_image(out, (SMALL[0] + 110, SMALL[1])), img)
    with pytest.raises(LandscapeError, match="unknown image format"):
        plot3d.render_surface(double_well(), tmp_path / "surface.tiff", size=SMALL)


def test_side_by_side_shares_colour_range_and_height_scale():
    flat, sharp = funnel(), double_well()
    plotter = plot3d.build_scene([flat, sharp], labels=["small", "large"], size=SMALL,
                                 zmax=float("inf"))
    try:
        lo = min(np.min(s.metrics["train_loss"]) for s in (flat, sharp))
        hi = max(np.max(s.metrics["train_loss"]) for s in (flat, sharp))
        ranges, tops = [], []
        for k in range(2):
            actors = surface_actors(plotter.renderers[k])
            assert len(actors) == 1
            ranges.append(tuple(actors[0].mapper.scalar_range))
            tops.append(actors[0].mapper.dataset.points[:, 2].max())
        assert ranges[0] == pytest.approx((lo, hi)) and ranges[1] == pytest.approx((lo, hi))
        # one height scale: the flat funnel stands lower in proportion to its highest loss
        top_flat = np.max(flat.metrics["train_loss"])
        assert tops[0] / tops[1] == pytest.approx((top_flat - lo) / (hi - lo), rel=1e-6)
        # both panels look through the same camera
        assert plotter.renderers[0].camera is plotter.renderers[1].camera
        img = plotter.screenshot(return_img=True)
    finally:
        plotter.close()
    assert_real_image(img, (2 * SMALL[0] + 110, SMALL[1]))


def test_overlay_puts_both_surfaces_in_one_view():
    plotter = plot3d.build_scene([funnel(), double_well()], overlay=True, size=SMALL,
                                 contours=None)
    try:
        assert len(plotter.renderers) == 1
        meshes = [a for a in plotter.renderer.actors.values()
                  if getattr(getattr(a, "mapper", None), "dataset", None) is not None
                  and a.mapper.dataset.n_points > 50]
        assert len(meshes) == 2
        assert meshes[0].prop.color != meshes[1].prop.color
        assert plotter.legend is not None
        assert_real_image(plotter.screenshot(return_img=True), SMALL)
    finally:
        plotter.close()


def test_holes_and_trajectory_render(tmp_path):
    s = with_holes(double_well(), 0.25)
    path = np.array([[-0.9, 0.6], [-0.6, 0.3], [-0.5, 0.0]])
    plotter = plot3d.build_scene(s, trajectories=path, size=SMALL, zmax=10)
    try:
        shown = surface_actors(plotter.renderers[0])[0].mapper.dataset
        full_cells = (len(s.x) - 1) * (len(s.y) - 1)
        assert 0 < shown.n_cells < full_cells  # cells touching a missing point are left out
        assert np.isfinite(shown.points).all()
        red = [a for a in plotter.renderers[0].actors.values()
               if hasattr(a, "prop")
               and np.allclose(a.prop.color.float_rgb, (214 / 255, 39 / 255, 40 / 255), atol=0.01)]
        assert len(red) == 2  # the path tube and its end marker
        assert_real_image(plotter.screenshot(return_img=True), (SMALL[0] + 110, SMALL[1]))
    finally:
        plotter.close()


def test_orbit_gif_turns_around(tmp_path):
    import imageio.v3 as iio

    out = plot3d.orbit_animation(double_well(), tmp_path / "orbit.gif", frames=4,
                                 size=(160, 120), contours=None)
    frames = iio.imread(out, index=None)
    assert frames.shape[0] == 4 and frames.shape[1:3] == (120, 160 + 110)
    assert np.abs(frames[0].astype(int) - frames[1]).mean() > 1.0  # the camera moved


def test_mp4_needs_a_writer(tmp_path, monkeypatch):
    monkeypatch.setattr("landscape.figures.outputs.mp4_writer", lambda: None)
    with pytest.raises(LandscapeError, match="MP4 needs the imageio-ffmpeg or av package"):
        plot3d.orbit_animation(double_well(), tmp_path / "orbit.mp4", frames=2)
    assert list(tmp_path.iterdir()) == []


def test_mp4_written_when_a_writer_exists(tmp_path):
    if plot3d.mp4_writer() is None:
        pytest.skip("no MP4 writer installed (imageio-ffmpeg or av)")
    out = plot3d.orbit_animation(double_well(), tmp_path / "orbit.mp4", frames=3,
                                 size=(161, 121), contours=None)
    assert out.stat().st_size > 1000


def test_clear_errors(monkeypatch, tmp_path):
    line = Surface(x=np.linspace(-1, 1, 5), y=None, metrics={"train_loss": np.ones(5)},
                   done=np.ones(5, bool))
    with pytest.raises(LandscapeError, match="1-D surface; a 3-D surface needs a 2-D"):
        plot3d.surface_mesh(line)
    with pytest.raises(LandscapeError, match="no metric 'test_loss'; available: train_acc"):
        plot3d.build_scene(funnel(), "test_loss")
    with pytest.raises(LandscapeError, match="must be above the smallest value"):
        plot3d.build_scene(funnel(), zmax=0.01)
    monkeypatch.setattr(plot3d.sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(LandscapeError, match="no display"):
        plot3d.render_surface(funnel(), tmp_path / "x.png", show=True)
    assert list(tmp_path.iterdir()) == []


def test_importing_the_module_leaves_pyvista_unloaded():
    code = "import sys, landscape.plot3d; print('pyvista' in sys.modules, 'vtkmodules' in " \
           "sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "False"]


def test_default_height_is_capped_near_the_minima_and_named_once():
    """By default the loss is clipped at plot2d.loss_cap (the basins fill the height), and the
    height axis and the colour bar name the same quantity, clip included."""
    from landscape.plot2d import loss_cap

    flat, sharp = funnel(), double_well()
    cap = loss_cap([s.metrics["train_loss"] for s in (flat, sharp)])
    assert cap < 0.2 * np.max(sharp.metrics["train_loss"])
    plotter = plot3d.build_scene([flat, sharp], size=SMALL, contours=None)
    try:
        for k in range(2):
            (actor,) = surface_actors(plotter.renderers[k])
            assert tuple(actor.mapper.scalar_range) == pytest.approx(
                (np.min(sharp.metrics["train_loss"]), cap))
        bar = next(iter(plotter.scalar_bars.values()))
        assert bar.GetTitle() == f"train loss\n(max {cap:.3g})"
    finally:
        plotter.close()
    assert plot3d._quantity("train_loss", False, cap, True) == f"train loss (clipped at {cap:.3g})"
    assert plot3d._quantity("train_loss", True, None, True).startswith("train loss, height log")


def _cone(slope: float, n: int = 41) -> Surface:
    x = np.linspace(-1, 1, n)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    return _surface(x, x, 0.05 + slope * np.hypot(xx, yy), f"cone_{slope}")


def _is_edge(actor) -> bool:
    """An actor drawing lines in the basin-edge colour."""
    data = getattr(getattr(actor, "mapper", None), "dataset", None)
    prop = getattr(actor, "prop", None)
    return (isinstance(data, pv.PolyData) and data.n_lines > 0 and prop is not None
            and np.allclose(np.asarray(prop.color.float_rgb),
                            np.asarray(pv.Color(plot3d.EDGE_COLOR).float_rgb)))


def test_basin_edge_rings_rank_the_basins_by_width():
    """With ``rise``, each panel draws its basin edge (loss ``rise`` above the centre) on the
    surface and on the floor map: on cones of slope 1.2 and 3.0 and rise 0.3, circles of
    radius 0.25 and 0.1, so the wider basin draws the wider ring."""
    plotter = plot3d.build_scene([_cone(1.2), _cone(3.0)], size=SMALL, rise=0.3)
    try:
        for k, radius in enumerate((0.25, 0.1)):
            rings = [a for a in plotter.renderers[k].actors.values() if _is_edge(a)]
            assert len(rings) == 2  # on the surface and on the floor
            for ring in rings:
                pts = np.asarray(ring.mapper.dataset.points)
                r = np.hypot(pts[:, 0], pts[:, 1])
                assert abs(r.mean() - radius) < 0.01 and r.std() < 0.01
    finally:
        plotter.close()
    plain = plot3d.build_scene([_cone(1.2)], size=SMALL)
    try:
        assert not [a for a in plain.renderers[0].actors.values() if _is_edge(a)]
    finally:
        plain.close()
