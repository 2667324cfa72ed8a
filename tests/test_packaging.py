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


def test_python_dash_m_landscape_runs_the_command():
    out = subprocess.run([sys.executable, "-m", "landscape", "--version"], capture_output=True,
                         text=True, timeout=120, cwd="/")
    assert out.returncode == 0 and "landscape" in out.stdout
