"""The quick demo end to end: the claims it exists to show, and a consistent report."""
import json
import re

import pytest
from click.testing import CliRunner

from landscape_cli.main import cli
from landscape.study import StudyConfig, run_study


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory, mnist1d_full):
    out = tmp_path_factory.mktemp("study")
    lines = []
    result = run_study(StudyConfig.quick(), out, progress=False, log=lines.append)
    return result, out, lines


def test_large_batch_is_sharper_and_generalizes_worse(quick_study):
    summary = quick_study[0].summary
    sb, lb = summary["models"]["small_batch"], summary["models"]["large_batch"]
    assert sb["train_accuracy"] > 0.99 and lb["train_accuracy"] > 0.99
    assert sb["test_accuracy"] > lb["test_accuracy"]
    assert lb["top_eigenvalue"] > sb["top_eigenvalue"]
    assert lb["sharpness"] > sb["sharpness"]
    assert lb["trace"] > sb["trace"]
    assert summary["checks"]["large_batch_sharper_top_eigenvalue"]
    assert summary["checks"]["large_batch_higher_sharpness"]
    # quick: half the training set (2,000 examples), the large batch is all of it
    assert sb["batch_size"] == 32 and lb["batch_size"] == 2000 and lb["full_batch"]


def test_summary_report_and_figures_agree(quick_study):
    result, out, lines = quick_study
    summary = json.loads((out / "summary.json").read_text())
    for run in ("small_batch", "large_batch"):
        for key in ("batch_size", "test_accuracy", "train_loss", "top_eigenvalue", "trace",
                    "sharpness"):
            assert summary["models"][run][key] is not None, (run, key)
    # residuals of the eigenpairs are reported and small relative to the values
    large = summary["models"]["large_batch"]
    assert max(large["eigen_residuals"]) < 1e-2 * large["top_eigenvalue"]
    for rel in summary["figures"].values():
        path = out / rel
        assert path.exists() and path.stat().st_size > 5000
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for rel in summary["figures"].values():
        assert f"]({rel})" in md
    assert html.count("data:image/png;base64,") == len(summary["figures"])
    # the numbers in the report's table are the summary's
    top = large["top_eigenvalue"]
    assert re.search(r"\| top Hessian eigenvalue \| [^|]+ \| " + re.escape(f"{top:.4g}"), md)
    acc = f"{100 * summary['models']['small_batch']['test_accuracy']:.1f}%"
    assert f"| test accuracy | {acc} |" in md and acc in html
    assert any("[7/7] figures and report" in line for line in lines), lines


# the next two read the report as the study wrote it (later tests rewrite it)
def test_report_links_the_interactive_scene(quick_study):
    result, out, lines = quick_study
    scene = out / "figures" / "surface_3d.html"
    if result.summary["scenes"] == {}:  # the web export is not installed here
        from browser import skip_or_fail

        assert any("interactive 3-D scene skipped" in line for line in lines)
        skip_or_fail("the web export (trame-pyvista) is not installed")
    assert result.summary["scenes"] == {"surface_3d": "figures/surface_3d.html"}
    assert result.files["scene_surface_3d"] == scene and scene.stat().st_size > 500_000
    assert "[Interactive 3-D scene](figures/surface_3d.html)" in (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert "<iframe src='figures/surface_3d.html'" in html
    assert "<a href='figures/surface_3d.html'>" in html
    seconds = [line for line in lines if "interactive 3-D scene: figures/surface_3d.html" in line]
    assert seconds, lines


def test_report_and_scene_open_in_a_browser(quick_study):
    """report.html (with the scene in a frame) and the scene on its own, in headless Chromium:
    no console error, no request off the machine, and the scene draws."""
    from browser import colours, open_page, skip_or_fail

    result, out, _ = quick_study
    if not result.summary["scenes"]:
        skip_or_fail("the web export (trame-pyvista) is not installed")
    report = open_page(out / "report.html", width=1100, height=900,
                       evaluate=("document.images.length", "document.querySelectorAll("
                                 "'iframe').length", "document.images[0].naturalWidth"))
    assert report.errors == [] and report.remote_requests == [], (report.errors,
                                                                   report.remote_requests)
    assert report.values["document.images.length"] == len(result.summary["figures"])
    assert report.values["document.images[0].naturalWidth"] > 100  # a decoded PNG
    assert report.values["document.querySelectorAll('iframe').length"] == 1
    assert any(u.endswith("figures/surface_3d.html") for u in report.requests)
    scene = open_page(out / "figures" / "surface_3d.html", width=1280, height=720,
                      ready="window.landscapeScene && window.landscapeScene.ready",
                      evaluate=("window.landscapeScene.linkedCameras",))
    assert scene.errors == [] and scene.remote_requests == [], (scene.errors,
                                                                 scene.remote_requests)
    assert scene.values["window.landscapeScene.linkedCameras"] is True
    assert colours(scene.screenshot[60:-40, :1160]) > 1000


def test_rerun_reuses_every_step(quick_study):
    result, out, _ = quick_study
    before = json.loads((out / "summary.json").read_text())
    again = run_study(StudyConfig.quick(), out, progress=False, log=None)
    assert {"train_small_batch", "train_large_batch", "interpolation",
            "curvature_large_batch", "sharpness_small_batch"} <= set(again.reused)
    assert again.summary["models"]["large_batch"]["top_eigenvalue"] == \
        before["models"]["large_batch"]["top_eigenvalue"]
    assert again.seconds < result.seconds / 2


def test_changed_setting_recomputes_only_what_depends_on_it(quick_study):
    _, out, _ = quick_study
    again = run_study(StudyConfig.quick(top_k=2, render_3d=False), out, progress=False,
                      log=None)
    assert "train_small_batch" in again.reused and "surfaces_small_batch" in again.reused
    assert "curvature_small_batch" not in again.reused
    assert len(again.summary["models"]["small_batch"]["top_eigenvalues"]) == 2


def test_quick_skips_the_most_negative_eigenvalue_and_asking_measures_it(quick_study):
    _, out, _ = quick_study
    quick = json.loads((out / "summary.json").read_text())["models"]["large_batch"]
    assert quick["bottom_eigenvalue"] is None
    assert "most negative eigenvalue" not in (out / "report.md").read_text()
    again = run_study(StudyConfig.quick(bottom_eigenvalue=True, render_3d=False), out,
                      progress=False, log=None)
    assert "curvature_large_batch" not in again.reused and "train_large_batch" in again.reused
    both = again.summary["models"]["large_batch"]
    assert both["bottom_eigenvalue"] < both["top_eigenvalue"]
    assert abs(both["bottom_eigenvalue"]) < 0.1 * both["top_eigenvalue"]  # a minimum
    row = next(line for line in (out / "report.md").read_text().splitlines()
               if line.startswith("| most negative eigenvalue |"))
    assert "n/a" not in row


def test_demo_cli_prints_the_table(quick_study):
    _, out, _ = quick_study
    res = CliRunner().invoke(cli, ["demo", "--quick", "--out", str(out), "--quiet", "--no-3d"])
    assert res.exit_code == 0, res.output
    assert "top Hessian eigenvalue" in res.output and "report.html" in res.output


def test_study_cli_bad_batch_is_one_line(tmp_path):
    res = CliRunner().invoke(cli, ["study", "--small-batch", "0", "--out", str(tmp_path / "s")])
    assert res.exit_code != 0 and "positive integer or 'full'" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "s").exists()


def test_v_versus_w_section(quick_study):
    result, out, _ = quick_study
    vw = result.summary["v_versus_w"]
    # One minimum's random plane is a V; the plane through three minima of the same network
    # shows three basins, each separated by a barrier that at least doubles the loss.
    assert vw["v"]["basins"] == 1 and vw["v"]["label"] == "V"
    assert vw["w_plane"]["basins"] == 3 and vw["w_plane"]["label"] == "W"
    assert len(vw["w_plane"]["barriers"]) == 2
    assert all(b["height"] > 0.5 for b in vw["w_plane"]["barriers"])
    # The straight line between two minima rises far above its ends; the trained curve less.
    assert vw["line"]["basins"] == 2 and vw["line"]["train_barrier"] > 0.5
    assert vw["curve_max_train_loss"] < vw["line_max_train_loss"]
    assert vw["curve"]["max_test_error"] < vw["line"]["max_test_error"]
    for name in ("v_versus_w_2d", "v_versus_w_paths"):
        assert (out / result.summary["figures"][name]).is_file()
    report = (out / "report.md").read_text()
    assert "V versus W" in report and "v_versus_w_2d.png" in report
    assert set(result.summary["step_seconds"]) >= {"train", "surfaces", "v_versus_w"}

