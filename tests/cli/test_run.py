"""tftrt run as users run it: the shipped model and its samples, offline."""

import csv
import json
import os

from tftrt_toolkit.jobs.run import DEFAULT_MODEL, DEFAULT_SAMPLES
from tests.every_cpu import environment_offering_bf16, model_process_env, tftrt_in_child

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_shipped_model_keeps_every_sample_class_after_bf16(tmp_path):
    # On every CPU: converted past the capability check where bf16 is not offered, and predicted
    # by `tftrt predict` in a process that can run it here (oneDNN where it has bf16 kernels, else Eigen).
    from tftrt_toolkit import ConversionConfig, convert

    output = tmp_path / "bf16"
    convert(DEFAULT_MODEL, str(output), ConversionConfig(backend="cpu", precision="bf16"),
            env=environment_offering_bf16(), progress=False)
    done = tftrt_in_child("predict", f"--model={output}", f"--data={DEFAULT_SAMPLES}", "--format=json",
                          f"--output={tmp_path / 'predictions.json'}", env=model_process_env(output))
    assert done.returncode == 0, done.stderr[-2000:]
    predictions = json.loads((tmp_path / "predictions.json").read_text())
    with open(os.path.join(DEFAULT_SAMPLES, "labels.csv")) as handle:
        expected = {row["image"]: int(row["class_id"]) for row in csv.DictReader(handle)}
    top1 = {os.path.basename(r["image"]): r["predictions"][0]["class_id"] for r in predictions["results"]}
    assert top1["cat.jpg"] in CAT_CLASSES
    assert top1 == expected


def test_signature_flag_is_used_not_ignored(tiny_saved_model, tmp_path, run_cli):
    # --signature picks the model's signature; a name the model lacks stops the run before any work.
    result = run_cli("run", f"--model={tiny_saved_model}", "--signature=no_such_signature",
                     f"--output_dir={tmp_path / 'report'}", "--data=synthetic:2", "--precisions=fp32",
                     expect_exit=3)
    assert "no_such_signature" in result.err and not (tmp_path / "report").exists()



def test_a_transformer_on_synthetic_tokens_reports_coverage_per_precision(tiny_transformer_saved_model, tmp_path,
                                                                          run_cli):
    # int8 on the tiny transformer quantizes a third of the multiply-adds: not converted, and the note says why.
    run_cli("run", f"--model={tiny_transformer_saved_model}", "--data=synthetic", "--precisions=fp32,int8",
            f"--output_dir={tmp_path / 'report'}", "--batch_sizes=1", "--duration=0.2")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    coverage = {row["name"]: row["precision_coverage"] for row in report["rows"]}
    assert coverage["original"] is None
    assert coverage["cpu-fp32"]["share"] == 1.0 and coverage["cpu-fp32"]["total_flops"] > 0
    assert "cpu-int8" not in coverage
    int8_notes = [note for note in report["notes"] if note.startswith("int8:")]
    assert len(int8_notes) == 1
    from tftrt_toolkit.backends.cpu.int8.quantize import _import_inc
    from tftrt_toolkit.errors import BackendUnavailable

    try:
        _import_inc()
        assert "int8 covers only 33% of the model's multiply-adds" in int8_notes[0]
    except BackendUnavailable:  # without the cpu-int8 extra, int8 is skipped for that reason instead
        assert "neural" in int8_notes[0].lower() or "cpu-int8" in int8_notes[0]
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "FLOPs in precision" in markdown and "**cpu-fp32**: precision coverage: 100% of" in markdown
