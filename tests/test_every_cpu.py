"""Every precision works on every CPU, and these tests prove it wherever they run.

No test here skips for a CPU feature. bf16 is converted past the capability check where the
CPU lacks it (a test-only override, see tests/every_cpu.py) and its models run on TF's Eigen
bf16 kernels there. A smaller CPU is imitated on a bigger one in child processes
(ONEDNN_MAX_CPU_ISA=AVX2, TF's oneDNN ops off and on), so a machine with bf16 also proves the
AVX2 path, and the other way round. Only speed is the hardware's, and nothing here times.
"""

import json

import numpy as np
import pytest

from tftrt_toolkit import ConversionConfig, convert
from tftrt_toolkit.backends.precisions import offered_precisions
from tftrt_toolkit.environment import probe
from tests.extras import HAVE_INC, needs_inc
from tests.every_cpu import (child_env, environment_offering_bf16, model_process_env, python_in_child,
                             run_serving_default, smaller_cpu_env, tftrt_in_child)

PRECISIONS = ("fp32", "bf16", "int8")
CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def _config(precision):
    if precision == "int8":  # 64 synthetic samples: above the int8 minimum, fast on the tiny model
        return ConversionConfig(backend="cpu", precision="int8", calibration_steps=8, batch_size=8)
    return ConversionConfig(backend="cpu", precision=precision)


def _marks(precision):
    return [needs_inc] if precision == "int8" else []


@pytest.mark.parametrize("precision", [pytest.param(p, marks=_marks(p)) for p in PRECISIONS])
def test_each_precision_converts_saves_loads_predicts_and_validates_on_this_cpu(precision, tiny_saved_model,
                                                                             tmp_path, random_images):
    output = tmp_path / precision
    result = convert(str(tiny_saved_model), str(output), _config(precision), env=environment_offering_bf16(),
                     calibration_data="synthetic" if precision == "int8" else None, progress=False)
    assert result.metadata["precision"] == precision

    # Load and run it as plain TensorFlow does, where this CPU can run it.
    outputs = run_serving_default(output, {"images": random_images})
    assert outputs["probabilities"].shape == (4, 10) and np.isfinite(outputs["probabilities"]).all()

    # predict and validate against the original, as a user runs them (a process set up for this model here).
    env = model_process_env(output)
    predicted = tftrt_in_child("predict", f"--model={output}", "--data=synthetic:2", "--format=json",
                               f"--output={tmp_path / 'predictions.json'}", env=env)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert len(json.loads((tmp_path / "predictions.json").read_text())["results"]) == 2
    validated = tftrt_in_child("validate", f"--original={tiny_saved_model}", f"--optimized={output}",
                               "--data=synthetic:16", f"--output={tmp_path / 'validation.json'}", env=env)
    assert validated.returncode == 0, validated.stderr[-2000:]
    report = json.loads((tmp_path / "validation.json").read_text())
    assert report["passed"] is True and report["top1_agreement"] >= 0.9


# What an AVX2-only CPU gets, decided by the toolkit's one answer (backends/precisions.py): with
# oneDNN off, fp32 only (bf16's grappler pass and int8's kernels are oneDNN's); with it on, int8 too.
_CONVERT_EACH_PRECISION = """
import json, os, sys
from tftrt_toolkit import ConversionConfig, convert
from tftrt_toolkit.backends.precisions import offered_precisions
from tftrt_toolkit.environment import probe
from tftrt_toolkit.errors import ToolkitError
from tests.every_cpu import environment_offering_bf16

source, work, have_inc = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
outcome = {"offered": list(offered_precisions(probe(), "cpu")), "features": list(probe().cpu_features)}
for precision in ("fp32", "bf16", "int8"):
    if precision == "int8" and not have_inc:
        continue
    options = dict(calibration_steps=8, batch_size=8) if precision == "int8" else {}
    try:
        convert(source, os.path.join(work, precision), ConversionConfig(backend="cpu", precision=precision, **options),
                env=environment_offering_bf16(), calibration_data="synthetic" if precision == "int8" else None,
                progress=False)
        outcome[precision] = "converted"
    except ToolkitError as error:
        outcome[precision] = f"{type(error).__name__}: {error}"
print(json.dumps(outcome))
"""


def _top1_and_outputs(path, images):
    return run_serving_default(path, {"images": images})["probabilities"]


@pytest.mark.parametrize("onednn_on", [False, True], ids=["avx2-onednn-off", "avx2-onednn-on"])
def test_an_avx2_cpu_converts_what_it_is_offered_and_refuses_the_rest_in_one_line(onednn_on, tiny_saved_model,
                                                                                 tmp_path, random_images):
    env = smaller_cpu_env(onednn_on)
    outcome = python_in_child(_CONVERT_EACH_PRECISION, tiny_saved_model, tmp_path, int(HAVE_INC), env=env)
    assert not {"avx512f", "avx512_bf16", "amx_bf16"} & set(outcome["features"]), "the cap reached the probe"
    assert outcome["offered"] == (["fp32", "int8"] if onednn_on and HAVE_INC else ["fp32"])
    assert outcome["fp32"] == "converted"
    if onednn_on:
        assert outcome["bf16"] == "converted"  # past the capability check: grappler's oneDNN pass runs on AVX2
    else:
        assert outcome["bf16"].startswith("BackendUnavailable") and "TF_ENABLE_ONEDNN_OPTS=1" in outcome["bf16"]
    if HAVE_INC:
        if onednn_on:
            assert outcome["int8"] == "converted"
        else:
            assert outcome["int8"].startswith("BackendUnavailable") and "oneDNN" in outcome["int8"]

    # What converted runs on this small CPU, as a user runs it: `tftrt predict` in a process like it.
    original = _top1_and_outputs(tiny_saved_model, random_images)
    for precision in [p for p in PRECISIONS if outcome.get(p) == "converted"]:
        model = tmp_path / precision
        predicted = tftrt_in_child("predict", f"--model={model}", "--data=synthetic:2", "--format=json", env=env)
        if precision == "bf16":
            # oneDNN has no AVX2 bf16 kernels: one line saying how to run it, not TensorFlow's AbortedError.
            assert predicted.returncode == 5, predicted.stderr[-2000:]
            lines = [line for line in predicted.stderr.splitlines() if line.startswith("tftrt predict:")]
            assert len(lines) == 1 and "AVX512" in lines[0] and "TF_ENABLE_ONEDNN_OPTS=0" in lines[0], predicted.stderr
            assert "Traceback" not in predicted.stderr
            # ...and with oneDNN off, TF's Eigen kernels run it, with the original's answers.
            eigen = python_in_child(_RUN_AND_PRINT, model, env=smaller_cpu_env(False))
            np.testing.assert_allclose(np.asarray(eigen["probabilities"]), original[:2], atol=0.05)
        else:
            assert predicted.returncode == 0, predicted.stderr[-2000:]


_RUN_AND_PRINT = """
import json, sys
import numpy as np, tensorflow as tf
images = np.random.default_rng(0).uniform(0, 255, size=(4, 32, 32, 3)).astype(np.float32)[:2]
out = tf.saved_model.load(sys.argv[1]).signatures["serving_default"](images=tf.constant(images))
print(json.dumps({"probabilities": out["probabilities"].numpy().tolist()}))
"""


def _expected_run_precisions(where):
    if where == "this-cpu":
        return list(offered_precisions(probe(), "cpu"))
    return ["fp32", "int8"] if where == "avx2-onednn-on" and HAVE_INC else ["fp32"]


@pytest.mark.parametrize("where", ["this-cpu", "avx2-onednn-off", "avx2-onednn-on"])
def test_the_main_job_on_the_shipped_model_writes_its_report(where, tmp_path):
    """README command 1 (`tftrt run`, the shipped model and samples), here and on an imitated AVX2 CPU."""
    # Here: oneDNN as tftrt sets it. Imitated: TF_ENABLE_ONEDNN_OPTS set, a user's choice tftrt keeps.
    env = child_env(None) if where == "this-cpu" else smaller_cpu_env(where.endswith("-on"))
    report_dir = tmp_path / "report"
    done = tftrt_in_child("run", f"--output_dir={report_dir}", "--batch_sizes=1", "--duration=0.1", env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    report = json.loads((report_dir / "report.json").read_text())
    rows = report["rows"]
    assert [row["precision"] for row in rows[1:]] == _expected_run_precisions(where), done.stderr[-3000:]
    for row in rows:
        assert row["top1"]["class_id"] in CAT_CLASSES, row  # cat.jpg, before and after
    for row in rows[1:]:
        assert row["validation_passed"] is True, row
    assert (report_dir / "report.md").is_file() and (report_dir / "benchmark.json").is_file()



_TOKENS_AND_PRINT = """
import json, sys
import numpy as np, tensorflow as tf
tokens = np.random.default_rng(0).integers(0, 100, size=(2, 64)).astype(np.int32)
outputs = tf.saved_model.load(sys.argv[1]).signatures["serving_default"](token_ids=tf.constant(tokens))
print(json.dumps({"probabilities": next(iter(outputs.values())).numpy().tolist()}))
"""


@pytest.fixture(scope="module")
def transformer_in_each_precision(tiny_transformer_saved_model, tmp_path_factory):
    """The tiny transformer converted here in every precision (int8 accepted at its 43% coverage)."""
    work = tmp_path_factory.mktemp("transformer_each_precision")
    converted = {}
    for precision in [p for p in PRECISIONS if p != "int8" or HAVE_INC]:
        config = _config(precision)
        if precision == "int8":
            config = ConversionConfig(backend="cpu", precision="int8", calibration_steps=8, batch_size=8,
                                      allow_partial_precision=True)
        convert(str(tiny_transformer_saved_model), str(work / precision), config, env=environment_offering_bf16(),
                calibration_data="synthetic" if precision == "int8" else None, progress=False)
        converted[precision] = work / precision
    return converted


@pytest.mark.parametrize("onednn_on", [False, True], ids=["avx2-onednn-off", "avx2-onednn-on"])
def test_a_transformer_runs_in_every_precision_an_avx2_cpu_can_run(onednn_on, transformer_in_each_precision,
                                                                   tiny_transformer_saved_model, tmp_path):
    """Its fused LayerNorm (_MklLayerNorm) runs with oneDNN off too: fp32 and bf16 need no oneDNN, int8 does."""
    env = smaller_cpu_env(onednn_on)
    original = np.asarray(python_in_child(_TOKENS_AND_PRINT, tiny_transformer_saved_model, env=env)["probabilities"])
    runs_there = {"fp32": True, "bf16": not onednn_on, "int8": onednn_on}
    for precision, model in transformer_in_each_precision.items():
        predicted = tftrt_in_child("predict", f"--model={model}", "--data=synthetic:2", "--format=json", env=env)
        if runs_there[precision]:
            assert predicted.returncode == 0, f"{precision}: {predicted.stderr[-2000:]}"
            got = np.asarray(python_in_child(_TOKENS_AND_PRINT, model, env=env)["probabilities"])
            np.testing.assert_allclose(got, original, atol=0.05, err_msg=precision)
        else:  # refused in one line saying what to set (bf16: oneDNN off; int8: oneDNN on)
            assert predicted.returncode != 0 and "Traceback" not in predicted.stderr, predicted.stderr[-2000:]
            lines = [line for line in predicted.stderr.splitlines() if line.startswith("tftrt predict:")]
            assert len(lines) == 1 and "TF_ENABLE_ONEDNN_OPTS" in lines[0], predicted.stderr[-2000:]
