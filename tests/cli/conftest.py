"""run_cli: run a tftrt subcommand in-process and check its exit code; capture stdout/stderr."""

import collections

import pytest

from tftrt_toolkit.cli.main import main

CliResult = collections.namedtuple("CliResult", "code out err")


@pytest.fixture
def run_cli(capsys):
    """run_cli("predict", "--model=...", expect_exit=0) -> CliResult(code, out, err).

    Fails the test, showing stderr, when the exit code is not ``expect_exit``. A non-zero
    ``expect_exit`` also checks the error is the documented single stderr line, no traceback.
    """

    def run(command, *args, expect_exit=0):
        capsys.readouterr()  # drop anything printed before
        code = main(["tftrt", command, *map(str, args)])
        out, err = capsys.readouterr()
        assert code == expect_exit, f"tftrt {command} exited {code}, expected {expect_exit}; stderr:\n{err}"
        if expect_exit:
            assert "Traceback" not in err
            assert f"tftrt {command}:" in err
        return CliResult(code, out, err)

    return run


@pytest.fixture
def tftrt(capsys):
    """tftrt("convert", "--model=...") -> (exit code, stdout, stderr), whatever the exit code."""

    def run(*args):
        capsys.readouterr()  # drop anything printed before
        code = main(["tftrt", *map(str, args)])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="session")
def fp32_conversion(tiny_saved_model, tmp_path_factory):
    """tiny_saved_model converted with `tftrt convert --backend=cpu --precision=fp32`."""
    out = tmp_path_factory.mktemp("cli") / "fp32"
    assert main(["tftrt", "convert", f"--model={tiny_saved_model}", f"--output={out}", "--backend=cpu", "--precision=fp32"]) == 0
    return out
