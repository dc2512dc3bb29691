"""Flag groups: config field names, the old spellings kept as aliases, and what a shared flag means per command."""

import importlib

import pytest
from absl import flags

from tftrt_toolkit.cli import flags as cli_flags
from tftrt_toolkit.cli.main import COMMANDS, main


def parse(command, *args):
    """Define ``command``'s flags and parse ``args`` as its command line; the parsed FLAGS."""
    importlib.import_module(COMMANDS[command]).define_flags()
    flags.FLAGS.unparse_flags()
    flags.FLAGS([f"tftrt {command}", *args])
    return flags.FLAGS


@pytest.fixture(autouse=True)
def fresh_flags():
    yield
    flags.FLAGS.unparse_flags()


def test_tensorrt_flags_carry_the_config_field_names():
    parse("convert", "--maximum_cached_engines=4", "--use_dynamic_shape", "--dynamic_shape_profile_strategy=Range")
    config = cli_flags.conversion_config_from_flags()
    assert (config.maximum_cached_engines, config.use_dynamic_shape, config.dynamic_shape_profile_strategy) == (4, True, "Range")


def test_old_tensorrt_spellings_still_set_the_same_fields():
    parse("convert", "--max_cached_engines=4", "--dynamic_shape", "--profile_strategy=Optimal")
    config = cli_flags.conversion_config_from_flags()
    assert (config.maximum_cached_engines, config.use_dynamic_shape, config.dynamic_shape_profile_strategy) == (4, True, "Optimal")
    parse("convert", "--dynamic_shape", "--nodynamic_shape")
    assert cli_flags.conversion_config_from_flags().use_dynamic_shape is False


def test_a_flagfile_with_the_old_spellings_builds_the_same_config(tmp_path):
    old = tmp_path / "old.flags"
    old.write_text("--backend=tensorrt\n--precision=fp16\n--dynamic_shape\n--profile_strategy=Range\n"
                   "--build_shapes=1,8\n--max_cached_engines=4\n")
    new = tmp_path / "new.flags"
    new.write_text(old.read_text().replace("--dynamic_shape\n", "--use_dynamic_shape\n")
                   .replace("--profile_strategy", "--dynamic_shape_profile_strategy")
                   .replace("--max_cached_engines", "--maximum_cached_engines"))
    parse("convert", f"--flagfile={old}")
    from_old = cli_flags.conversion_config_from_flags()
    parse("convert", f"--flagfile={new}")
    assert cli_flags.conversion_config_from_flags() == from_old
    assert from_old.maximum_cached_engines == 4 and from_old.use_dynamic_shape


@pytest.mark.parametrize("command, args, expected", [
    ("run", [], {"duration": 3.0, "batch_sizes": ["1", "8"]}),
    ("run", ["--seconds_per_measurement=0.5", "--run_batch_sizes=1,4"], {"duration": 0.5, "batch_sizes": ["1", "4"]}),
    ("tune", [], {"duration": 3.0}),
    ("tune", ["--seconds_per_candidate=0.25"], {"duration": 0.25}),
    ("benchmark", [], {"duration": None, "batch_sizes": ["1", "8", "32"]}),
    ("benchmark", ["--duration=2"], {"duration": 2.0}),
])
def test_the_timing_setting_is_one_flag_with_each_commands_default_and_old_name(command, args, expected):
    parsed = parse(command, *args)
    assert {name: parsed[name].value for name in expected} == expected


@pytest.mark.parametrize("command, meaning", [
    ("convert", "calibration"),
    ("predict", "per model call"),
    ("validate", "each model"),
    ("tune", "timed at"),
])
def test_batch_size_help_says_what_it_means_for_each_command(capsys, command, meaning):
    assert main(["tftrt", command, "--help"]) == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  --batch_size:")]
    assert meaning in line
    assert command == "convert" or "calibration" not in line


@pytest.mark.parametrize("command, flag, old", [
    ("convert", "--maximum_cached_engines", "--max_cached_engines"),
    ("convert", "--use_dynamic_shape", "--dynamic_shape"),
    ("convert", "--dynamic_shape_profile_strategy", "--profile_strategy"),
    ("inspect", "--use_dynamic_shape", "--dynamic_shape"),
    ("run", "--duration", "--seconds_per_measurement"),
    ("run", "--batch_sizes", "--run_batch_sizes"),
    ("tune", "--duration", "--seconds_per_candidate"),
])
def test_help_names_the_old_spelling(capsys, command, flag, old):
    assert main(["tftrt", command, "--help"]) == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"  {flag}:")]
    assert f"Formerly {old}" in line or f"Formerly --" in line and old in line


def test_benchmark_help_does_not_claim_names_it_never_had(capsys):
    assert main(["tftrt", "benchmark", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "run_batch_sizes" not in help_text and "seconds_per" not in help_text


def test_every_renamed_flag_names_a_flag_that_exists():
    for command in COMMANDS:
        importlib.import_module(COMMANDS[command]).define_flags()
    for old, new in cli_flags.RENAMED_FLAGS.items():
        assert new in flags.FLAGS and old in flags.FLAGS, (old, new)
