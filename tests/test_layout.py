"""The library's layout keeps the shape DESIGN.md describes: small modules, packages that import
each other only through public names, no import cycle, and a light ``import landscape``."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "landscape"
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the library."""
    out = {}
    for path in sorted(LIB.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _package(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _imports(module: str, path: Path, *, top_level_only: bool):
    """(imported module, imported names) of ``module``'s ``from``-imports, resolved to absolute
    names; with ``top_level_only``, imports inside functions are left out."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    base = _package(module, path).split(".")
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                target = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


def test_no_library_module_is_over_600_lines():
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_private_name_is_imported_across_packages():
    """A private (``_name``) name is used only inside its own package; old module paths kept as
    re-export shims for one release are exempt (they exist to keep old imports working)."""
    mods = _modules()
    bad = []
    for module, path in mods.items():
        if "Deprecated location" in (ast.get_docstring(ast.parse(path.read_text())) or ""):
            continue
        own = _package(module, path)
        for target, names in _imports(module, path, top_level_only=False):
            if not target.startswith("landscape"):
                continue
            target_pkg = target if target in mods and mods[target].name == "__init__.py" \
                else target.rpartition(".")[0]
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            private_module = any(p.startswith("_") and p != "__init__" for p in target.split(".")[1:])
            if target_pkg != own and (private or private_module):
                bad.append(f"{module} imports {private or target} from {target}")
    assert not bad, "\n".join(bad)


def test_no_import_cycle_at_module_level():
    mods = _modules()
    graph = {m: set() for m in mods}
    for module, path in mods.items():
        for target, names in _imports(module, path, top_level_only=True):
            for cand in [target, *(f"{target}.{n}" for n in names)]:
                if cand in mods and cand != module:
                    graph[module].add(cand)
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, stack: list[str]) -> bool:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1 and not _is_parent_package(nxt, node):
                cycle.extend(stack + [node, nxt])
                return True
            if nxt not in state and visit(nxt, stack + [node]):
                return True
        state[node] = 2
        return False

    for m in graph:
        if m not in state and visit(m, []):
            break
    assert not cycle, " -> ".join(cycle)


def _is_parent_package(pkg: str, module: str) -> bool:
    """A package's ``__init__`` importing its own submodules is not a cycle."""
    return module.startswith(pkg + ".")


@pytest.mark.parametrize("module", ["landscape", "landscape.curvature", "landscape.figures",
                                    "landscape.workflows", "landscape.util"])
def test_importing_the_library_loads_no_figure_library(module):
    code = (f"import sys, {module}; "
            "print(sorted(m for m in ('matplotlib', 'pyvista') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("old, new, names", [
    ("landscape.hessian", "landscape.curvature",
     ["hessian_eigenvalues", "hessian_trace", "hessian_density", "HessianOperator", "dense_hessian"]),
    ("landscape.plot2d", "landscape.figures", ["plot_lines", "plot_contours", "figure_format"]),
    ("landscape.plot3d", "landscape.figures", ["render_surface", "export_html", "orbit_animation"]),
    ("landscape.compare", "landscape.workflows", ["compare", "CompareConfig", "Steps"]),
    ("landscape.study", "landscape.workflows", ["run_study", "StudyConfig", "RunSpec"]),
    ("landscape.sweep", "landscape.workflows", ["run_sweep", "SweepConfig"]),
    ("landscape.report", "landscape.workflows", ["write_report", "table_rows"]),
    ("landscape._util", "landscape.util", ["output_lock", "write_json", "pick_device"]),
])
def test_old_module_paths_still_work_for_one_release(old, new, names):
    """Users' scripts that import from the flat layout keep working: the old module is a
    re-export of the same objects."""
    import importlib

    old_mod, new_mod = importlib.import_module(old), importlib.import_module(new)
    assert "Deprecated location" in (old_mod.__doc__ or "")
    for name in names:
        assert getattr(old_mod, name) is getattr(new_mod, name), name
