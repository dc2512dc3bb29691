"""tftrt run as users run it: the shipped model and its samples, offline."""

import csv
import json
import os

import pytest

from tftrt_toolkit.cli.main import main
from tftrt_toolkit.environment import probe
from tftrt_toolkit.jobs.run import DEFAULT_SAMPLES

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.mark.skipif(not probe().cpu_has_bf16, reason="this CPU has neither AVX512-BF16 nor AMX")
def test_shipped_model_keeps_every_sample_class_after_bf16(tmp_path, capsys):
    code = main(["tftrt", "run", f"--output_dir={tmp_path / 'report'}", "--precisions=bf16",
                 "--run_batch_sizes=1", "--seconds_per_measurement=0.2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "top-1 on cat.jpg" in out and "Egyptian cat" in out
    predictions = json.loads((tmp_path / "report" / "predictions.json").read_text())
    with open(os.path.join(DEFAULT_SAMPLES, "labels.csv")) as handle:
        expected = {row["image"]: int(row["class_id"]) for row in csv.DictReader(handle)}
    for model_name in ("original", "cpu-bf16"):
        top1 = {os.path.basename(r["image"]): r["predictions"][0]["class_id"] for r in predictions[model_name]["results"]}
        assert top1["cat.jpg"] in CAT_CLASSES, model_name
        assert top1 == expected, model_name


def test_signature_flag_is_used_not_ignored(tiny_saved_model, tmp_path, run_cli):
    # --signature picks the model's signature; a name the model lacks stops the run before any work.
    result = run_cli("run", f"--model={tiny_saved_model}", "--signature=no_such_signature",
                     f"--output_dir={tmp_path / 'report'}", "--data=synthetic:2", "--precisions=fp32",
                     expect_exit=3)
    assert "no_such_signature" in result.err and not (tmp_path / "report").exists()

