"""tftrt run as users run it: the shipped model and its samples, offline."""

import csv
import json
import os

from tftrt_toolkit.backends.precisions import offered_precisions
from tftrt_toolkit.environment import probe
from tftrt_toolkit.errors import ConversionError
from tftrt_toolkit.jobs.run import DEFAULT_MODEL, DEFAULT_SAMPLES
from tests.every_cpu import environment_offering_bf16, model_process_env, tftrt_in_child
from tests.extras import HAVE_INC

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
    # int8 on the tiny transformer quantizes 43% of the multiply-adds (attention's Einsums stay fp32): refused at convert, a
    # failed row naming the share, and the run goes on (int8 only offered, not named: exit 0).
    out = tmp_path / "report"
    run_cli("run", f"--model={tiny_transformer_saved_model}", "--data=synthetic", f"--output_dir={out}",
            "--batch_sizes=1", "--duration=0.2")
    rows = {row["name"]: row for row in json.loads((out / "report.json").read_text())["rows"]}
    assert rows["original"]["precision_coverage"] is None
    fp32 = rows["cpu-fp32"]["precision_coverage"]
    assert fp32["share"] == 1.0 and fp32["total_flops"] > 0
    markdown = (out / "report.md").read_text()
    assert "FLOPs in precision" in markdown and "**cpu-fp32**: precision coverage: 100% of" in markdown
    if HAVE_INC and "int8" in offered_precisions(probe()):
        int8 = rows["cpu-int8"]
        assert int8["failure"]["step"] == "convert" and int8["precision_coverage"] is None
        assert "int8 covers only 43% of the model's multiply-adds" in int8["failure"]["reason"]
        # Named with --precisions, the same refusal fails the run in one line, after writing the report.
        named = run_cli("run", f"--model={tiny_transformer_saved_model}", "--data=synthetic", "--precisions=fp32,int8",
                        f"--output_dir={tmp_path / 'named'}", "--batch_sizes=1", "--duration=0.2",
                        expect_exit=ConversionError.exit_code)
        assert "left in fp32: Einsum ×2." in named.err.splitlines()[-1]
        assert (tmp_path / "named" / "report.md").exists()
