"""tune's objective: at batch 1 it measures requests in flight both ways, chooses, and the choice is carried.

No timing assertions: which threading wins is the machine's; the test checks that a choice is
made from the measurement, recorded with its measured reason, and read by serving-config and
ModelRunner.
"""

import json
import os

import pytest

from tftrt_toolkit.errors import ConfigError
from tftrt_toolkit.jobs.tune import Budget, tune
from tftrt_toolkit.jobs.tune.throughput_choice import choose_by_throughput
from tftrt_toolkit.runtime.serving_threads import serving_cores
from tftrt_toolkit.serving.model_config import serving_config


def row(name, precision="fp32", one=None, tf=None, agreement=1.0, p50=1.0, status="measured"):
    return {"candidate": name, "precision": precision, "status": status, "p50_ms": p50, "top1_agreement": agreement,
            "concurrency": 2, "requests_per_s_one_thread": one, "requests_per_s_tf_threads": tf}


def test_throughput_choice_takes_the_most_requests_inside_the_budget():
    table = [row("original", one=100.0, tf=90.0, status="original"),
             row("cpu-fp32", one=300.0, tf=200.0),
             row("cpu-bf16", "bf16", one=350.0, tf=360.0, p50=0.9),  # TF's threads win for this one
             row("cpu-int8", "int8", one=900.0, tf=500.0, agreement=0.9)]  # outside the budget
    chosen, reason = choose_by_throughput(table, Budget("top1_agreement", 0.99))
    assert chosen is table[2]
    assert reason.startswith("cpu-bf16: most requests/s inside the budget (top-1 agreement >= 99.0%) with 2 requests "
                             "in flight: 360.0/s at TF's threads")
    assert "next: cpu-fp32 at 300.0/s" in reason and "outside the budget: cpu-int8 (900.0/s" in reason
    # Rows not measured in flight leave the choice to the latency rule.
    assert choose_by_throughput([row("cpu-fp32")], Budget("top1_agreement", 0.99)) == (None, "")


@pytest.fixture(scope="module")
def tuned_at_batch_1(tiny_saved_model, tmp_path_factory):
    base = tmp_path_factory.mktemp("serving") / "tiny"
    lines = []
    result = tune(str(tiny_saved_model), "synthetic:8", str(base / "1"), batch_size=1, candidates=["cpu-fp32"],
                  duration=0.15, progress=lines.append)
    return result, base, lines


def test_tune_at_batch_1_chooses_by_requests_in_flight_and_says_why(tuned_at_batch_1):
    result, base, lines = tuned_at_batch_1
    serving = result.serving
    assert result.objective == "throughput" and serving["objective"] == "throughput"
    chosen = result.chosen
    assert chosen["concurrency"] == serving["concurrency"] == serving_cores()
    assert chosen["requests_per_s_one_thread"] > 0 and chosen["requests_per_s_tf_threads"] > 0
    one_thread_won = chosen["requests_per_s_one_thread"] > chosen["requests_per_s_tf_threads"]
    assert serving["setting"] == ("one_thread_per_request" if one_thread_won else "tf_threads")
    assert (serving["intra_op_threads"], serving["inter_op_threads"]) == (
        (1, serving_cores()) if one_thread_won else (0, 0))
    assert f"{chosen['requests_per_s_one_thread']:.1f} requests/s at 1 intra-op thread per request against " \
           f"{chosen['requests_per_s_tf_threads']:.1f} at TF's threads" in serving["reason"]
    assert result.table[0]["requests_per_s_tf_threads"] > 0  # the original, measured the same way
    assert any(line.startswith("serve it with: objective throughput") for line in lines)
    assert any("req/s x" in line for line in result.table_lines())

    saved = json.load(open(os.path.join(result.report_dir, "tune.json")))
    assert saved["objective"] == "throughput" and saved["serving"] == serving
    chosen_by = json.load(open(base / "1" / "assets.extra" / "tftrt_toolkit.json"))["chosen_by"]
    assert chosen_by["serving"] == serving
    assert chosen_by["threads"] == {"intra_op_threads": serving["intra_op_threads"],
                                    "inter_op_threads": serving["inter_op_threads"]}


def test_serving_config_carries_tunes_choice(tuned_at_batch_1):
    result, base, _ = tuned_at_batch_1
    serving = result.serving
    for config in (serving_config(str(base), "tiny"),  # from the model's own metadata
                   serving_config(str(base), "tiny", tune_report=os.path.join(result.report_dir, "tune.json"))):
        assert config.intra_op_threads == (serving["intra_op_threads"] or None)
        assert config.inter_op_threads == (serving["inter_op_threads"] or None)
        assert config.threads_reason == serving["reason"]
        batching = config.batching
        assert (batching.num_batch_threads, batching.max_batch_size, batching.allowed_batch_sizes) == (
            serving["concurrency"], 1, (1,))
        assert batching.batch_timeout_micros == 0
        text = config.batching_parameters_text()
        assert f"# why: {serving['reason']}" in text
        flags = config.server_flags("/config")
        assert ("--tensorflow_intra_op_parallelism=1" in flags) == (serving["intra_op_threads"] == 1)


def test_objective_latency_keeps_the_latency_rule(tiny_saved_model, tmp_path):
    result = tune(str(tiny_saved_model), "synthetic:8", str(tmp_path / "tuned"), batch_size=1, objective="latency",
                  candidates=["cpu-fp32"], duration=0.1, progress=lambda message: None)
    assert result.objective == "latency" and result.serving["objective"] == "latency"
    assert result.chosen.get("requests_per_s_one_thread") is None
    assert result.reason.startswith("cpu-fp32: fastest inside the budget")
    with pytest.raises(ConfigError, match="objective='fast' is not valid"):
        tune(str(tiny_saved_model), "synthetic:8", str(tmp_path / "again"), objective="fast", progress=False)
