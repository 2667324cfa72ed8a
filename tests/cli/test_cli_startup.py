"""`landscape --help` and `--version` answer without importing torch or the other heavy
libraries (their speed is measured in benchmarks/cli.py, not here)."""
import subprocess
import sys

import pytest

HEAVY = ("torch", "numpy", "matplotlib", "pyvista", "h5py", "scipy", "landscape")

PROBE = """
import sys
from landscape_cli.main import main
sys.argv = ["landscape", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
print("IMPORTED", ",".join(m for m in {heavy!r} if m in sys.modules))
print("EXIT", code)
"""


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["-V"], ["train", "--help"],
                                  ["surface", "--help"], ["plot", "--help"],
                                  ["hessian", "--help"], ["study", "--help"]])
def test_help_and_version_import_nothing_heavy(args):
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args],
                          capture_output=True, text=True, timeout=60)
    lines = done.stdout.splitlines()
    assert lines[-1] == "EXIT 0", done.stdout + done.stderr
    assert lines[-2] == "IMPORTED ", f"{args} imported {lines[-2]}"
    assert "Usage:" in done.stdout or "version" in done.stdout


def test_version_is_the_package_version():
    import landscape

    done = subprocess.run([sys.executable, "-m", "landscape_cli.main", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout.strip() == f"landscape, version {landscape.__version__}"
