"""The scripts under benchmarks/ are not a package: tests load them from their files."""

import contextlib
import importlib.util
import os
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "benchmarks")


@contextlib.contextmanager
def _benchmark_script(filename: str):
    """The module in benchmarks/FILENAME, registered in sys.modules while in use (dataclasses look it up)."""
    name = "benchmarks_" + os.path.splitext(filename)[0]
    spec = importlib.util.spec_from_file_location(name, os.path.join(BENCHMARKS, filename))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


@pytest.fixture(scope="session")
def benchmark_script():
    """``with benchmark_script("peers.py") as peers:`` gives the script's module."""
    return _benchmark_script
