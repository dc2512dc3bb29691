"""A sequence model's per-token work split into token branches (backends/cpu/token_branches.py): the same answers,
the work in independent branches joined only where attention or a reduction needs every token, the serving threads
recorded and applied, and a model without token ids left as it was."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.every_cpu import environment_offering_bf16, python_in_child, run_serving_default, smaller_cpu_env
from tftrt_toolkit.config import ConversionConfig
from tftrt_toolkit.errors import ConfigError
from tftrt_toolkit.pipeline import convert

_RUN = """
import sys, json, numpy as np, tensorflow as tf
function = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
out = next(iter(function(token_ids=tf.constant(np.load(sys.argv[2]))).values())).numpy()
print(json.dumps({"outputs": out.tolist()}))
"""


def _saved_ops(path):
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    nodes = [node for function in saved.meta_graphs[0].graph_def.library.function for node in function.node_def]
    return [node.op for node in nodes]


def _outputs(path, tokens):
    # In this process where the model runs here, else in a child (bf16 on an AVX2 CPU runs on Eigen).
    return next(iter(run_serving_default(str(path), {"token_ids": tokens}).values()))


@pytest.fixture(scope="module")
def tokens():
    return np.random.default_rng(5).integers(0, 100, size=(3, 64)).astype(np.int32)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_transformer_split_into_two_token_branches_gives_the_same_answers(precision, tiny_transformer_saved_model,
                                                                            tokens, tmp_path):
    converted = {}
    for branches in (0, 2):
        converted[branches] = convert(str(tiny_transformer_saved_model), str(tmp_path / f"{precision}-{branches}"),
                                      ConversionConfig(backend="cpu", precision=precision, token_branches=branches),
                                      env=environment_offering_bf16(), progress=False)
    record = converted[2].metadata["conversion_summary"]["token_branches"]
    assert record["branches"] == 2 and "why_not" not in record
    assert converted[2].metadata["runtime"]["serving_threads"]["intra_op_threads"] == 1
    assert converted[2].metadata["runtime"]["serving_threads"]["inter_op_threads"] == 2
    assert "token_branches" not in converted[0].metadata["conversion_summary"]
    assert "serving_threads" not in converted[0].metadata["runtime"]

    one, two = _saved_ops(tmp_path / f"{precision}-0"), _saved_ops(tmp_path / f"{precision}-2")
    # Every per-token matmul and LayerNorm runs once per branch; the token ids are split once, and the
    # branches join for attention's keys and values and for the mean over the tokens.
    assert two.count("Split") == 1 and two.count("ConcatV2") >= 3
    assert two.count("_MklLayerNorm") == 2 * one.count("_MklLayerNorm") > 0
    assert two.count("Einsum") == 2 * one.count("Einsum") > 0

    expected = _outputs(tiny_transformer_saved_model, tokens)
    unsplit, split = _outputs(tmp_path / f"{precision}-0", tokens), _outputs(tmp_path / f"{precision}-2", tokens)
    # Each token's sums are the same sums in the same order: the split changes no answer.
    np.testing.assert_allclose(split, unsplit, rtol=0, atol=1e-6)
    np.testing.assert_allclose(split, expected, atol=1e-5 if precision == "fp32" else 0.05)


def test_a_split_bf16_transformer_runs_on_an_avx2_cpu_with_onednn_off(tiny_transformer_saved_model, tokens, tmp_path):
    # Split and ConcatV2 have Eigen kernels: the branches run wherever the unsplit bf16 model runs.
    result = convert(str(tiny_transformer_saved_model), str(tmp_path / "bf16"),
                     ConversionConfig(backend="cpu", precision="bf16", token_branches=2),
                     env=environment_offering_bf16(), progress=False)
    np.save(tmp_path / "tokens.npy", tokens)
    on_eigen = python_in_child(_RUN, result.path, tmp_path / "tokens.npy", env=smaller_cpu_env(False))
    np.testing.assert_allclose(np.array(on_eigen["outputs"]), _outputs(tiny_transformer_saved_model, tokens), atol=0.05)


def test_a_model_without_token_ids_is_left_as_it_was_and_says_why(tiny_saved_model, tmp_path):
    result = convert(str(tiny_saved_model), str(tmp_path / "cnn"),
                     ConversionConfig(backend="cpu", precision="fp32", token_branches=2), progress=False)
    record = result.metadata["conversion_summary"]["token_branches"]
    assert record["branches"] == 1 and "no token-id input" in record["why_not"]
    assert "serving_threads" not in result.metadata["runtime"]
    assert "Split" not in _saved_ops(tmp_path / "cnn")


@pytest.mark.parametrize("value", [-1, 65, True, "2", 1.5])
def test_a_bad_branch_count_is_refused_in_one_line(value):
    with pytest.raises(ConfigError, match="token_branches=") as error:
        ConversionConfig(backend="cpu", precision="bf16", token_branches=value)
    assert "\n" not in str(error.value)


def test_token_branches_with_int8_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="applies to cpu fp32 and bf16"):
        ConversionConfig(backend="cpu", precision="int8", token_branches=2)


def test_token_branches_with_tensorrt_is_refused_in_one_line():
    # Its backend would not read it: refused, not ignored. auto resolves to a backend, then validates again.
    with pytest.raises(ConfigError, match="applies to the cpu backend"):
        ConversionConfig(backend="tensorrt", precision="fp32", token_branches=2)
    with pytest.raises(ConfigError, match="applies to the cpu backend"):
        ConversionConfig(precision="fp32", token_branches=2).replace(backend="tensorrt")


def test_convert_refuses_a_bad_branch_count_and_writes_nothing(tiny_transformer_saved_model, tmp_path):
    output = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "tftrt_toolkit.cli.main", "convert",
                           f"--model={tiny_transformer_saved_model}", "--backend=cpu", "--precision=bf16",
                           "--token_branches=-2", f"--output={output}"], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and not output.exists()
    errors = [line for line in done.stderr.splitlines() if "token_branches" in line]
    assert len(errors) == 1 and "use a whole number" in errors[0]


def test_the_model_runner_serves_a_split_model_with_the_threads_it_records(tiny_transformer_saved_model, tmp_path):
    result = convert(str(tiny_transformer_saved_model), str(tmp_path / "fp32"),
                     ConversionConfig(backend="cpu", precision="fp32", token_branches=2), progress=False)
    code = ("import json\n"
            "from tftrt_toolkit.runtime.session import ModelRunner, current_threads\n"
            f"runner = ModelRunner({result.path!r}).load()\n"
            "print(json.dumps({'threads': current_threads(), 'note': runner.threads_note}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    applied = json.loads(done.stdout.strip().splitlines()[-1])
    assert applied["threads"] == {"intra_op_threads": 1, "inter_op_threads": 2}
    assert applied["note"] == "TF threads intra=1 inter=2, as its conversion recorded for this model (latency)"


def test_convert_prints_the_branches_and_the_threads_to_serve_them_with(tiny_transformer_saved_model, tmp_path):
    done = subprocess.run([sys.executable, "-m", "tftrt_toolkit.cli.main", "convert",
                           f"--model={tiny_transformer_saved_model}", "--backend=cpu", "--precision=fp32",
                           "--token_branches=2", f"--output={tmp_path / 'out'}"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "token branches: 2; serve with TF threads intra_op=1 inter_op=2 (recorded in the model)" in done.stdout
