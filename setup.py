"""Package discovery (everything else is in setup.cfg).

Every package under ``landscape/`` is found automatically, and the repository's ``cli/``
folder (with any subpackage it grows) installs as ``landscape_cli``: setup.cfg's ``find:``
cannot rename a folder, so the list is built here.
"""
from setuptools import find_packages, setup

LIBRARY = find_packages(include=["landscape", "landscape.*"])
CLI = ["landscape_cli" + name[len("cli"):] for name in find_packages(include=["cli", "cli.*"])]

setup(packages=LIBRARY + CLI)
