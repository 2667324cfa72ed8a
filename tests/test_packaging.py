"""What installing the project puts into site-packages."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_installs_no_bare_cli_module(tmp_path):
    """The repository's cli/ folder installs as landscape_cli: a bare top-level ``cli`` would
    collide with any other project's."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path),
                    str(ROOT)], check=True, capture_output=True, timeout=600)
    wheel = next(tmp_path.glob("landscape_minima-*.whl"))
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {"landscape", "landscape_cli"} <= tops
    assert not {t for t in tops if t == "cli" or t.startswith("cli.")}
    entry = zipfile.ZipFile(wheel).read(next(n for n in zipfile.ZipFile(wheel).namelist()
                                             if n.endswith("entry_points.txt"))).decode()
    assert "landscape = landscape_cli.main:main" in entry


@pytest.mark.slow
def test_the_wheel_holds_every_subpackage_and_its_data(tmp_path):
    """Every folder with an ``__init__.py`` under landscape/ and cli/ is in the wheel (found, not
    listed by hand), and so is every non-Python file a package reads (the web page's assets)."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path),
                    str(ROOT)], check=True, capture_output=True, timeout=600)
    names = set(zipfile.ZipFile(next(tmp_path.glob("landscape_minima-*.whl"))).namelist())
    for top, installed in (("landscape", "landscape"), ("cli", "landscape_cli")):
        for init in (ROOT / top).rglob("__init__.py"):
            inside = init.relative_to(ROOT / top).as_posix()
            assert f"{installed}/{inside}" in names, f"{installed}/{inside} missing from the wheel"
    assets = [p for p in (ROOT / "landscape").rglob("assets/*") if p.is_file()]
    assert assets, "the web page's assets have moved: update this test"
    for path in assets:
        assert path.relative_to(ROOT).as_posix() in names, f"{path} missing from the wheel"


def test_python_dash_m_landscape_runs_the_command():
    out = subprocess.run([sys.executable, "-m", "landscape", "--version"], capture_output=True,
                         text=True, timeout=120, cwd="/")
    assert out.returncode == 0 and "landscape" in out.stdout
