"""Flag groups: each command reads exactly the flags it declares, refuses the rest, keeps the old spellings."""

import pytest

from tftrt_toolkit.cli import flags as cli_flags
from tftrt_toolkit.cli.main import COMMANDS, command_flags, main

# What each command needs on its command line to parse at all.
REQUIRED = {
    "run": [], "doctor": [],
    "tune": ["--model=m", "--data=d", "--output=o"],
    "inspect": ["--model=m"],
    "convert": ["--model=m", "--output=o"],
    "predict": ["--model=m", "--data=d"],
    "validate": ["--original=a", "--optimized=b"],
    "benchmark": ["--model=m"],
    "batch-predict": ["--model=m", "--data=d", "--output=o"],
    "serving-config": ["--model_base_path=b", "--name=n", "--output=o"],
}
ALL_FLAGS = sorted({name for command in COMMANDS for name in command_flags(command).names})


def parse(command, *args):
    """``command``'s flags, parsed from ``args`` (plus what it requires)."""
    flags = command_flags(command)
    flags.parse([f"tftrt {command}", *REQUIRED[command], *args])
    return flags


def test_required_flags_cover_every_command():
    assert set(REQUIRED) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_declared_flag_is_read_and_help_lists_exactly_those(command, capsys):
    flags = parse(command)
    assert flags.read == set(flags.names), f"declared, never read: {sorted(set(flags.names) - flags.read)}"
    assert len(flags.names) == len(set(flags.names))
    assert main(["tftrt", command, "--help"]) == 0
    listed = [line.split(":")[0].strip()[2:] for line in capsys.readouterr().out.splitlines() if line.startswith("  --")]
    assert listed == flags.names + ["flagfile"]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_flag_the_command_does_not_read_is_refused_at_once_naming_it(command, tftrt):
    unread = [name for name in ALL_FLAGS if name not in command_flags(command).names]
    assert unread, command
    for name in unread:
        code, out, err = tftrt(command, *REQUIRED[command], f"--{name}=1")
        assert code == 2, (command, name, err)
        [line] = err.strip().splitlines()
        assert line.startswith(f"tftrt {command}: error: --{name} is not a flag of `tftrt {command}`"), line
        assert out == ""


def test_run_output_is_refused_and_points_at_output_dir(tftrt):
    code, _, err = tftrt("run", "--output=X")
    assert code == 2 and "--output is not a flag of `tftrt run`" in err and "--output_dir" in err
    code, _, err = tftrt("run", "--calibration_steps=4")
    assert code == 2 and "--calibration_steps is not a flag of `tftrt run`" in err


def test_absl_and_tensorflow_global_flags_are_not_accepted_either(tftrt):
    import absl.logging  # noqa: F401  (defines --verbosity, --logtostderr in absl's global FLAGS)

    code, _, err = tftrt("doctor", "--logtostderr")
    assert code == 2 and "--logtostderr is not a flag of `tftrt doctor`" in err


def test_tensorrt_flags_carry_the_config_field_names():
    flags = parse("convert", "--maximum_cached_engines=4", "--use_dynamic_shape", "--dynamic_shape_profile_strategy=Range")
    config = flags[cli_flags.ConversionFlags].config
    assert (config.maximum_cached_engines, config.use_dynamic_shape, config.dynamic_shape_profile_strategy) == (4, True, "Range")


def test_the_signature_reaches_the_config():
    assert parse("convert", "--signature=serve")[cli_flags.ConversionFlags].config.signature_key == "serve"


def test_old_tensorrt_spellings_still_set_the_same_fields():
    flags = parse("convert", "--max_cached_engines=4", "--dynamic_shape", "--profile_strategy=Optimal")
    config = flags[cli_flags.ConversionFlags].config
    assert (config.maximum_cached_engines, config.use_dynamic_shape, config.dynamic_shape_profile_strategy) == (4, True, "Optimal")
    assert parse("convert", "--dynamic_shape", "--nodynamic_shape")[cli_flags.ConversionFlags].config.use_dynamic_shape is False


def test_a_flagfile_with_the_old_spellings_builds_the_same_config(tmp_path):
    old = tmp_path / "old.flags"
    old.write_text("--backend=tensorrt\n--precision=fp16\n--dynamic_shape\n--profile_strategy=Range\n"
                   "--build_shapes=1,8\n--max_cached_engines=4\n")
    new = tmp_path / "new.flags"
    new.write_text(old.read_text().replace("--dynamic_shape\n", "--use_dynamic_shape\n")
                   .replace("--profile_strategy", "--dynamic_shape_profile_strategy")
                   .replace("--max_cached_engines", "--maximum_cached_engines"))
    from_old = parse("convert", f"--flagfile={old}")[cli_flags.ConversionFlags].config
    assert parse("convert", f"--flagfile={new}")[cli_flags.ConversionFlags].config == from_old
    assert from_old.maximum_cached_engines == 4 and from_old.use_dynamic_shape


def test_a_flagfile_with_a_flag_the_command_ignores_is_refused(tmp_path, tftrt):
    flagfile = tmp_path / "x.flags"
    flagfile.write_text("--backend=cpu\n--calibration_steps=4\n")
    code, _, err = tftrt("run", f"--flagfile={flagfile}")
    assert code == 2 and "--calibration_steps is not a flag of `tftrt run`" in err


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
    assert {name: parsed.values[name].value for name in expected} == expected


def test_a_command_keeps_only_its_own_old_spellings(tftrt):
    code, _, err = tftrt("benchmark", "--model=m", "--seconds_per_measurement=1")
    assert code == 2 and "--seconds_per_measurement is not a flag of `tftrt benchmark`" in err


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


def test_every_renamed_flag_is_an_alias_somewhere():
    aliased = {old for command in COMMANDS for old in cli_flags.RENAMED_FLAGS if old in command_flags(command).values}
    assert aliased == set(cli_flags.RENAMED_FLAGS)


@pytest.mark.parametrize("command", ["run", "tune", "predict", "validate", "benchmark", "batch-predict"])
def test_every_command_that_reads_images_takes_the_same_data_flags(command):
    names = command_flags(command).names
    for name in ("data", "preprocess", "input_shape", "strict_data"):
        assert name in names, (command, name)
    assert ("labels_csv" in names) == (command in ("run", "tune", "validate"))  # where accuracy is measured


def test_convert_takes_the_data_flags_for_its_calibration_data():
    names = command_flags("convert").names
    assert {"calibration_data", "preprocess", "input_shape", "strict_data"} <= set(names) and "data" not in names


def test_model_loading_options_are_one_group():
    # --weights/--signature/--unsafe_deserialization/--custom_objects come from ModelFlags, read once.
    flags = parse("run", "--weights=none", "--signature=s", "--unsafe_deserialization", "--custom_objects=a,b")
    assert flags[cli_flags.ModelFlags].load_options == {
        "weights": None, "signature_key": "s", "unsafe_deserialization": True, "custom_objects": ["a", "b"]}


def _readme_commands():
    """{command: flags its README synopsis shows}, DATA and LOADING expanded."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = text.split("## Commands", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    groups = {name: re.findall(r"--(\w+)", line) for name, line in re.findall(r"^(DATA|LOADING)\s+=(.*)$", block, re.M)}
    shown, command = {}, None
    for line in block.splitlines():
        if line.startswith("tftrt "):
            command = line.split()[1]
            shown[command] = []
        elif not line.startswith(" "):
            command = None
        if command:
            shown[command] += re.findall(r"--(\w+)", line)
            for name, names in groups.items():
                if re.search(rf"\[{name}\]", line):
                    shown[command] += names
    return shown


def test_readme_commands_section_shows_only_flags_each_command_reads():
    shown = _readme_commands()
    assert set(shown) == set(COMMANDS)
    for command, names in shown.items():
        flags = command_flags(command)
        for name in names:
            plain = name[2:] if name.startswith("no") and name[2:] in flags.names else name
            assert plain in flags.values, f"README shows --{name} for tftrt {command}, which does not read it"
    assert "preprocess" in shown["run"] and "preprocess" in shown["tune"]
