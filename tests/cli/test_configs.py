"""Every shipped flagfile in configs/ parses and describes a valid ConversionConfig."""

import pathlib

import pytest
from absl import flags

from tftrt_toolkit.cli import convert as convert_command
from tftrt_toolkit.cli import flags as cli_flags

CONFIGS = sorted((pathlib.Path(__file__).resolve().parents[2] / "configs").glob("*.flags"))


def test_configs_exist():
    assert {p.name for p in CONFIGS} >= {"vgg16-fp16.flags", "cpu-bf16.flags"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_flagfile_builds_a_valid_config(path):
    convert_command.define_flags()
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["tftrt convert", f"--flagfile={path}"])
    config = cli_flags.conversion_config_from_flags()
    assert config.backend.value in ("cpu", "tensorrt")
    flags.FLAGS.unparse_flags()
