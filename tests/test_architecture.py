"""The house rules a newcomer relies on, read from the source with ``ast`` (nothing is imported).

Layers, one direction: cli -> jobs -> runtime, report -> pipeline -> backends, serving ->
models, data -> core (config, errors, artifacts, environment, onednn). See docs/architecture.md.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "tftrt_toolkit"
MAX_LINES = 800

# Higher imports lower (or its own layer), never the reverse. A new top-level module or
# package gets a rank here: where it sits is a design decision, not something to infer.
LAYER_RANKS = {
    "cli": 6,
    "jobs": 5, "api": 5,
    "runtime": 4, "report": 4,
    "pipeline": 3,
    "backends": 2, "serving": 2,
    "analysis": 1.5,  # what a graph holds, computed without running it: read by backends, reads models
    "models": 1, "data": 1,
    "config": 0, "errors": 0, "artifacts": 0, "environment": 0, "onednn": 0, "shipped_files": 0, "progress": 0,
    "steps": 0, "tensorrt_libraries": 0,
}


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: pathlib.Path):
    """Every tftrt_toolkit module ``path`` imports (absolute or relative, at any depth: lazy imports count)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # `from tftrt_toolkit import jobs` imports the subpackage: count each name too.
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == "tftrt_toolkit" or name.startswith("tftrt_toolkit."):
                yield name, node.lineno


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


SOURCES = sorted(PACKAGE.rglob("*.py"))
IMPORTS = [(path, name, line) for path in SOURCES for name, line in _imported_modules(path)]


def _violations(importer_layers, imported_layers):
    found = []
    for path, name, line in IMPORTS:
        if _layer(_module_name(path)) in importer_layers and _layer(name) in imported_layers:
            found.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
    return found


def test_the_scan_sees_the_package():
    # Guards the tests below against passing because they read nothing.
    assert len(SOURCES) > 50
    assert any(name.startswith("tftrt_toolkit.runtime") for path, name, _ in IMPORTS if "cli" in path.parts)


def test_report_imports_neither_runtime_nor_jobs():
    assert _violations({"report"}, {"runtime", "jobs"}) == []


def test_runtime_imports_neither_report_nor_jobs():
    assert _violations({"runtime"}, {"report", "jobs"}) == []


def test_nothing_below_the_cli_imports_it():
    below_cli = set(LAYER_RANKS) - {"cli"}
    assert _violations(below_cli, {"cli"}) == []


def test_nothing_below_jobs_imports_them():
    below_jobs = {layer for layer, rank in LAYER_RANKS.items() if rank < LAYER_RANKS["jobs"]}
    assert _violations(below_jobs, {"jobs"}) == []


def test_every_module_has_a_layer():
    unranked = sorted({_layer(_module_name(path)) for path in SOURCES} - set(LAYER_RANKS) - {""})
    assert unranked == [], f"give these a rank in LAYER_RANKS (and docs/architecture.md): {unranked}"


def test_no_module_imports_a_higher_layer():
    upward = []
    for path, name, line in IMPORTS:
        importer, imported = _layer(_module_name(path)), _layer(name)
        if importer in LAYER_RANKS and imported in LAYER_RANKS and LAYER_RANKS[imported] > LAYER_RANKS[importer]:
            upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({importer}) imports {name} ({imported})")
    assert upward == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(PACKAGE.parent)))
def test_no_module_is_longer_than_800_lines(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines; split it along its responsibilities (STYLE.md)"

