"""tftrt itself: the command list, unknown commands, and every command's --help."""

import pytest

def test_top_level_help_lists_commands(tftrt):
    code, out, _ = tftrt("--help")
    assert code == 0 and "convert" in out and "doctor" in out


def test_unknown_command(tftrt):
    code, _, err = tftrt("frobnicate")
    assert code == 2 and "unknown command 'frobnicate'" in err


def test_command_help_shows_docstring_and_flags(tftrt):
    code, out, _ = tftrt("convert", "--help")
    assert code == 0
    assert "tftrt convert: optimize a model" in out
    for flag in ("--maximum_cached_engines", "--minimum_segment_size", "--max_workspace_size_bytes", "--signature",
                 "--overwrite", "--backend", "--precision"):
        assert flag in out


@pytest.mark.parametrize("command,flag", [("predict", "--labels"), ("validate", "--min_top1_agreement"),
                                          ("benchmark", "--batch_sizes")])
def test_help_shows_docstring_and_flags(run_cli, command, flag):
    result = run_cli(command, "--help")
    assert result.out.startswith(f"tftrt {command}:")
    assert flag in result.out and "--intra_op_threads" in result.out and "--output" in result.out
