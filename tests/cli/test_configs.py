"""Every shipped flagfile in configs/ parses and describes a valid ConversionConfig."""

import pathlib

import pytest

from tftrt_toolkit.cli import flags as cli_flags
from tftrt_toolkit.cli.main import command_flags

CONFIGS = sorted((pathlib.Path(__file__).resolve().parents[2] / "configs").glob("*.flags"))


def test_configs_exist():
    assert {p.name for p in CONFIGS} >= {"vgg16-fp16.flags", "cpu-bf16.flags"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_flagfile_builds_a_valid_config(path):
    flags = command_flags("convert")
    flags.parse(["tftrt convert", f"--flagfile={path}", "--model=m", "--output=o"])
    assert flags[cli_flags.ConversionFlags].config.backend.value in ("cpu", "tensorrt")
