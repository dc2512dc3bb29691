"""The house rules a newcomer relies on, read from the source with ``ast`` (nothing is imported).

Layers, one direction: cli -> jobs -> runtime -> report -> pipeline -> backends, serving ->
models, data -> core (config, errors, artifacts, environment, onednn). ``report`` renders plain
data and sits below ``runtime``: a result class (runtime) carries its rendering (report). See
docs/architecture.md.
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
    # What we learn about a graph without converting or running it (the TensorRT segment plan):
    # it sits below the backends, on the frozen graph both backends start from.
    "analysis": 1.5,
    # The floor of backends/: the frozen graph (freeze, large weights held aside, grappler
    # stages) and graph helpers the cpu backend, the tensorrt backend and the plan share.
    "backends.frozen": 1.2, "backends.graphdef": 1.2, "backends.weights_size": 1.2,
    "models": 1, "data": 1,
    "config": 0, "errors": 0, "artifacts": 0, "environment": 0, "onednn": 0, "shipped_files": 0, "progress": 0,
    "steps": 0, "tensorrt_libraries": 0, "version": 0, "benchmark_schema": 0, "signature": 0,
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
    """The LAYER_RANKS key ``module`` belongs to: its longest dotted prefix there (``backends.frozen``), else its top package."""
    parts = module.split(".")[1:]
    for length in range(len(parts), 1, -1):
        if ".".join(parts[:length]) in LAYER_RANKS:
            return ".".join(parts[:length])
    return parts[0] if parts else ""


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


def test_runtime_does_not_import_jobs():
    # runtime may import report: each result class renders itself with report's helpers.
    assert _violations({"runtime"}, {"jobs"}) == []


def test_nothing_below_the_cli_imports_it():
    below_cli = set(LAYER_RANKS) - {"cli"}
    assert _violations(below_cli, {"cli"}) == []


def test_nothing_below_jobs_imports_them():
    below_jobs = {layer for layer, rank in LAYER_RANKS.items() if rank < LAYER_RANKS["jobs"]}
    assert _violations(below_jobs, {"jobs"}) == []


def test_data_never_imports_models():
    # models and data share a floor; one direction between them (models reads data's shapes;
    # the signature record both read is a core module, tftrt_toolkit/signature.py).
    assert _violations({"data"}, {"models"}) == []


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



# ----------------------------------------------------------------------------- no import circles

BENCHMARKS = PACKAGE.parent / "benchmarks"  # run as scripts: benchmarks/ is their sys.path root


def _modules_under(root: pathlib.Path, base: pathlib.Path):
    """Module name -> path of every .py under ``root``, named as imported from ``base`` (a sys.path entry)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(base).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


ALL_MODULES = {**_modules_under(PACKAGE, PACKAGE.parent), **_modules_under(BENCHMARKS, BENCHMARKS)}


def _module_imports(name: str, path: pathlib.Path):
    """The known modules ``name`` imports, lazy and type-checking imports included.

    ``from package import submodule`` imports the submodule, not the package's face (Python
    runs the package's __init__ as a parent either way): the package counts only when a name
    taken from it is not a module of its own.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in ALL_MODULES)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([part for part in anchor if part] + ([node.module] if node.module else []))
            submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in ALL_MODULES]
            found.update(submodules)
            if base in ALL_MODULES and len(submodules) < len(node.names):
                found.add(base)
    found.discard(name)
    return found


def _import_cycles():
    """Each group of modules that import one another (strongly connected components of the import graph)."""
    graph = {name: _module_imports(name, path) for name, path in ALL_MODULES.items()}
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(node):  # Tarjan's algorithm
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for name in graph:
        if name not in index:
            visit(name)
    return cycles


def test_the_cycle_scan_sees_both_trees():
    assert "tftrt_toolkit.runtime.benchmark" in ALL_MODULES and "peer_benchmark.builders" in ALL_MODULES
    assert "peer_benchmark.rows" in _module_imports("peer_benchmark.builders", ALL_MODULES["peer_benchmark.builders"])


def test_no_two_modules_import_each_other_anywhere():
    # Package and benchmarks/: a circle means neither module can be read, tested or moved alone.
    assert _import_cycles() == []


# ----------------------------------------------------------------------------- the backends' rooms

BACKENDS = PACKAGE / "backends"
MAX_BACKEND_LINES = 400


def test_tensorrt_and_cpu_backends_never_import_each_other():
    crossing = [f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}" for path, name, line in IMPORTS
                if (BACKENDS / "tensorrt" in path.parents and name.startswith("tftrt_toolkit.backends.cpu"))
                or (BACKENDS / "cpu" in path.parents and name.startswith("tftrt_toolkit.backends.tensorrt"))]
    assert crossing == []
    assert (BACKENDS / "cpu" / "backend.py").exists() and (BACKENDS / "tensorrt" / "backend.py").exists()


def test_the_backends_floor_imports_no_backend():
    # frozen/, graphdef.py and weights_size.py serve both backends and the segment plan.
    floor = [path for path in SOURCES if BACKENDS / "frozen" in path.parents
             or path in (BACKENDS / "graphdef.py", BACKENDS / "weights_size.py")]
    assert len(floor) >= 5
    upward = [f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}" for path, name, line in IMPORTS
              if path in floor and name.startswith(("tftrt_toolkit.backends.cpu", "tftrt_toolkit.backends.tensorrt",
                                                    "tftrt_toolkit.analysis"))]
    assert upward == []


@pytest.mark.parametrize("path", sorted(BACKENDS.rglob("*.py")), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_no_backends_module_is_longer_than_400_lines(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_BACKEND_LINES, f"{path.name} has {lines} lines; split it into one module per step"


def test_the_segment_plan_is_an_analysis_not_a_backend():
    assert (PACKAGE / "analysis" / "tensorrt_plan" / "plan.py").exists()
    assert not (BACKENDS / "tensorrt_plan").exists()
