"""tftrt tune as users run it: an impossible budget refused before any work, exit 8 with the table written."""

import os

import pytest


@pytest.fixture
def run_tune(tftrt):
    """run_tune("--model=...") -> (exit code, stdout, stderr); never a traceback."""

    def run(*args):
        code, out, err = tftrt("tune", *args)
        assert "Traceback" not in err
        return code, out, err

    return run


def test_cli_refuses_an_impossible_budget_before_any_work(run_tune, tiny_saved_model, tmp_path):
    code, _, err = run_tune(f"--model={tiny_saved_model}", "--data=synthetic:8", f"--output={tmp_path / 'o'}",
                            "--min_top1_agreement=1.01")
    assert code == 2 and "min_top1_agreement=1.01 is not valid" in err
    code, _, err = run_tune(f"--model={tiny_saved_model}", "--data=synthetic:8", f"--output={tmp_path / 'o'}",
                            "--max_top1_drop=0.01")
    assert code == 2 and "max_top1_drop needs ground truth" in err
    assert os.listdir(tmp_path) == []


def test_cli_exits_8_when_nothing_qualifies_and_still_writes_the_table(run_tune, tiny_saved_model, tmp_path):
    code, out, err = run_tune(f"--model={tiny_saved_model}", "--data=synthetic:8", f"--output={tmp_path / 'o'}",
                              "--candidates=cpu-int8", "--seconds_per_candidate=0.1")
    assert code == 8
    assert err.strip().splitlines()[-1].startswith("tftrt tune: error: no candidate could be measured (cpu-int8: ")
    assert "cpu-int8" in out and "failed" in out  # the table on stdout
    assert sorted(os.listdir(tmp_path)) == ["o.tune"]
    assert sorted(os.listdir(tmp_path / "o.tune")) == ["tune.csv", "tune.json", "tune.png"]
