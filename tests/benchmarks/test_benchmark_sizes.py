"""The benchmarks keep the package's size rule: no script or module under benchmarks/ past 800 lines."""

import pathlib

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
MAX_LINES = 800  # the package's limit (tests/test_architecture.py); STYLE.md: past it, a file holds two concerns
SOURCES = sorted(BENCHMARKS.rglob("*.py"))


def test_the_benchmarks_are_found():
    assert BENCHMARKS / "peers.py" in SOURCES and BENCHMARKS / "peer_benchmark" / "run.py" in SOURCES


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(BENCHMARKS)))
def test_no_benchmark_file_is_longer_than_800_lines(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines; split it along its responsibilities (STYLE.md)"
