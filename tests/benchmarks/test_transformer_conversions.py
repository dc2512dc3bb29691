"""benchmarks/transformer_conversions.py: a conversion, and SavedModels converted elsewhere, in the same rounds."""

import json

import pytest


@pytest.fixture(scope="module")
def transformer_conversions(benchmark_script):
    with benchmark_script("transformer_conversions.py") as module:
        yield module


def test_a_compared_savedmodel_is_checked_and_timed_beside_the_conversion(
        transformer_conversions, tiny_transformer_saved_model, tmp_path):
    # The original itself as the "before": it must agree fully and be timed in the same rounds.
    output = tmp_path / "ab"
    transformer_conversions.main([f"--model={tiny_transformer_saved_model}", "--precisions=fp32",
                                  f"--compare=before={tiny_transformer_saved_model}", "--agreement_samples=16",
                                  "--batch_sizes=1", "--rounds=1", "--calls=1", f"--work_dir={tmp_path / 'work'}",
                                  f"--output={output}"])
    record = json.loads((tmp_path / "ab.json").read_text())
    [compared] = record["compared"]
    assert compared["name"] == "before" and compared["top1_agreement"] == 1.0 and compared["max_abs_difference"] == 0
    assert set(record["speed"]["1"]) == {"original", "cpu_fp32", "before"}
    [conversion] = record["conversions"]
    assert conversion["exit_code"] == 0 and "gelu_ready" in conversion["stages_that_changed_the_graph"]
    assert "| before (`" in (tmp_path / "ab.md").read_text()


def test_a_compare_entry_that_is_not_a_savedmodel_is_one_line(transformer_conversions, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        transformer_conversions.main(["--model=transformer:tiny", "--precisions=", f"--compare=before={tmp_path}",
                                      f"--work_dir={tmp_path}", f"--output={tmp_path / 'x'}"])
    assert exit_info.value.code == 2
    assert "--compare entry 'before=" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
