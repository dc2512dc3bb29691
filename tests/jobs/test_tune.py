"""tune: the choice on fixed tables, the candidates per machine and a real tune of the tiny model (the command: tests/cli/test_tune.py)."""

import csv
import dataclasses
import json
import os

import numpy as np
import pytest

from tftrt_toolkit.environment import probe
from tftrt_toolkit.errors import ConfigError
from tftrt_toolkit.jobs.tune import (TABLE_COLUMNS, Budget, Candidate, NoCandidateInBudget, choose,
                                        default_candidates, mark_pareto, tune)


def row(name, precision="fp32", p50=10.0, throughput=800.0, agreement=1.0, drop=None, status="measured", **extra):
    return {"candidate": name, "backend": "cpu", "precision": precision, "status": status, "p50_ms": p50,
            "throughput": throughput, "top1_agreement": agreement, "top1_drop": drop, **extra}


# --------------------------------------------------------------------------- choose() on fixed tables

def test_fastest_inside_the_budget_wins_and_faster_ones_outside_are_named():
    table = [row("original", status="original", p50=12.0),
             row("cpu-fp32", p50=10.0, agreement=1.0),
             row("cpu-bf16", "bf16", p50=7.0, agreement=0.995),
             row("cpu-int8", "int8", p50=5.0, agreement=0.95)]
    chosen, reason = choose(table, min_top1_agreement=0.99)
    assert chosen is table[2]
    assert reason.startswith("cpu-bf16: fastest inside the budget")
    assert "faster but outside the budget: cpu-int8" in reason
    # A looser budget lets int8 in.
    assert choose(table, min_top1_agreement=0.95)[0] is table[3]


def test_ties_on_p50_go_to_throughput_then_accuracy_then_the_simpler_precision():
    # Equal at the table's 0.01 ms: a tie, however the raw floats compare.
    by_throughput = [row("cpu-bf16", "bf16", p50=7.004, throughput=900.0), row("cpu-fp32", p50=7.001, throughput=950.0)]
    chosen, reason = choose(by_throughput, min_top1_agreement=0.99)
    assert chosen["candidate"] == "cpu-fp32" and "tied on p50 with cpu-bf16, chosen for its higher throughput" in reason

    by_agreement = [row("cpu-int8", "int8", p50=7.0, agreement=0.99), row("cpu-bf16", "bf16", p50=7.0, agreement=1.0)]
    chosen, reason = choose(by_agreement, min_top1_agreement=0.99)
    assert chosen["candidate"] == "cpu-bf16" and "better accuracy/agreement" in reason

    by_precision = [row("cpu-int8", "int8", p50=7.0), row("cpu-bf16", "bf16", p50=7.0), row("cpu-fp32", p50=7.0)]
    chosen, reason = choose(by_precision, min_top1_agreement=0.99)
    assert chosen["candidate"] == "cpu-fp32" and "simpler precision" in reason

    # Not a tie: 0.01 ms apart is faster.
    assert choose([row("a", p50=7.01, throughput=2000.0), row("b", "bf16", p50=7.0)], min_top1_agreement=0.9)[0]["candidate"] == "b"


def test_nothing_inside_names_the_closest_not_the_fastest():
    table = [row("cpu-int8", "int8", p50=5.0, agreement=0.90),
             row("cpu-bf16", "bf16", p50=7.0, agreement=0.97),
             row("cpu-fp32", p50=10.0, agreement=0.98, status="failed", reason="disk full"),  # not measured: ignored
             row("original", status="original", p50=12.0)]
    chosen, reason = choose(table, min_top1_agreement=0.99)
    assert chosen is None
    assert "closest: cpu-bf16 with top-1 agreement 97.0%" in reason and "cpu-int8" not in reason


def test_nothing_measured_says_why_each_was_not():
    table = [row("original", status="original"),
             row("cpu-fp32", p50=None, agreement=None, status="skipped", reason="time budget: not reached"),
             row("cpu-int8", "int8", p50=None, agreement=None, status="failed", reason="too few calibration samples")]
    chosen, reason = choose(table, min_top1_agreement=0.99)
    assert chosen is None
    assert reason == ("no candidate could be measured (cpu-fp32: time budget: not reached; "
                      "cpu-int8: too few calibration samples)")


def test_accuracy_drop_and_agreement_budgets_can_disagree():
    # int8 changes many answers but not how many are right; bf16 changes few but loses accuracy.
    table = [row("cpu-fp32", p50=10.0, agreement=1.0, drop=0.0),
             row("cpu-int8", "int8", p50=5.0, agreement=0.97, drop=0.0),
             row("cpu-bf16", "bf16", p50=7.0, agreement=0.995, drop=0.01)]
    assert choose(table, max_top1_drop=0.005)[0]["candidate"] == "cpu-int8"
    assert choose(table, min_top1_agreement=0.99)[0]["candidate"] == "cpu-bf16"
    chosen, reason = choose(table, max_top1_drop=0.005)
    assert "top-1 accuracy drop <= 0.5 points" in reason and "top-1 drop 0 points" in reason
    # A drop budget ignores rows without accuracy (no labels): nothing to judge.
    assert choose([row("cpu-fp32", drop=None)], max_top1_drop=0.005)[0] is None


@pytest.mark.parametrize("kwargs", [{}, {"max_top1_drop": 0.01, "min_top1_agreement": 0.99},
                                    {"min_top1_agreement": 1.01}, {"max_top1_drop": -0.1}])
def test_the_budget_must_be_exactly_one_share(kwargs):
    with pytest.raises(ConfigError):
        choose([row("cpu-fp32")], **kwargs)


def test_pareto_front_keeps_rows_nothing_beats_on_both_axes():
    table = [row("fast-bad", p50=5.0, agreement=0.9), row("mid", p50=7.0, agreement=0.99),
             row("slow-same", p50=8.0, agreement=0.99), row("slow-best", p50=10.0, agreement=1.0),
             row("failed", p50=None, agreement=None, status="failed")]
    mark_pareto(table, Budget.from_args(min_top1_agreement=0.99))
    assert [r["candidate"] for r in table if r["pareto"]] == ["fast-bad", "mid", "slow-best"]


# --------------------------------------------------------------------------- candidates

def test_candidates_here_are_the_cpu_precisions_then_a_thread_setting():
    env = probe()
    names = [c.name for c in default_candidates(env, batch_size=8)]
    assert names[0] == "cpu-fp32"
    assert f"cpu-fp32 intra={env.cpu_count} inter=1" in names
    assert ("cpu-bf16" in names) == env.cpu_has_bf16
    assert not any(name.startswith("tensorrt") for name in names)
    plain = dataclasses.replace(env, cpu_features=())  # no BF16, no VNNI: fp32 only
    assert [c.name for c in default_candidates(plain)] == ["cpu-fp32", f"cpu-fp32 intra={env.cpu_count} inter=1"]


def test_batch_size_one_also_tries_single_threaded_kernels():
    env = dataclasses.replace(probe(), cpu_features=(), cpu_count=2)  # fp32 only, 2 cores
    assert [c.name for c in default_candidates(env, batch_size=1)] == [
        "cpu-fp32", "cpu-fp32 intra=2 inter=1", "cpu-fp32 intra=1 inter=1"]
    assert "cpu-fp32 intra=1 inter=1" not in [c.name for c in default_candidates(env, batch_size=8)]
    one_core = dataclasses.replace(env, cpu_count=1)
    assert [c.name for c in default_candidates(one_core, batch_size=1)] == ["cpu-fp32", "cpu-fp32 intra=1 inter=1"]


def test_a_sequence_model_at_batch_size_one_also_tries_token_branches(tiny_transformer_saved_model, tiny_saved_model):
    from tftrt_toolkit.models.loader import load_model

    env = dataclasses.replace(probe(), cpu_features=(), cpu_count=2)  # fp32 only, 2 cores
    with load_model(str(tiny_transformer_saved_model)) as transformer, load_model(str(tiny_saved_model)) as cnn:
        names = [c.name for c in default_candidates(env, batch_size=1, signature=transformer.signature)]
        assert names[-1] == "cpu-fp32 token-branches=2 intra=1 inter=2"
        branched = default_candidates(env, batch_size=1, signature=transformer.signature)[-1]
        assert branched.config.token_branches == 2 and branched.threads == (1, 2)
        # Not for images, not at batch 8, not on one core.
        assert not any("token-branches" in c.name for c in default_candidates(env, batch_size=1, signature=cnn.signature))
        assert not any("token-branches" in c.name
                       for c in default_candidates(env, batch_size=8, signature=transformer.signature))
        one_core = dataclasses.replace(env, cpu_count=1)
        assert not any("token-branches" in c.name
                       for c in default_candidates(one_core, batch_size=1, signature=transformer.signature))


def test_a_tensorrt_machine_gets_every_precision_and_the_settings_that_matter():
    env = dataclasses.replace(probe(), tensorflow_built_with_tensorrt=True, tensorrt_loaded_version="8.6.1",
                              gpus=("/physical_device:GPU:0",))
    candidates = default_candidates(env, batch_size=4)
    trt = [c for c in candidates if c.config.backend.value == "tensorrt"]
    assert [c.name for c in trt[:3]] == ["tensorrt-fp32", "tensorrt-fp16", "tensorrt-int8"]
    assert {c.config.precision.value for c in trt if c.config.minimum_segment_size == 10} == {"fp32", "fp16", "int8"}
    dynamic = [c for c in trt if c.config.use_dynamic_shape]
    assert len(dynamic) == 3 and all(c.config.build_shapes == ((4,),) for c in dynamic)
    assert all(c.config.dynamic_shape_profile_strategy == "Optimal" for c in dynamic)
    assert not any(c.threads for c in trt)  # threads are a cpu setting
    assert candidates[len(trt)].name == "cpu-fp32"  # cpu after TensorRT, still tried


def test_candidate_names_parse_with_threads_and_refuse_impossible_pairs():
    env = probe()
    candidate = Candidate.parse("cpu-bf16@2x1", env)
    assert (candidate.config.precision.value, candidate.threads, candidate.name) == ("bf16", (2, 1), "cpu-bf16 intra=2 inter=1")
    assert Candidate.parse("fp32", env).name == "cpu-fp32"  # the backend auto picks here
    for bad in ("cpu-fp16", "cpu-fp64", "cpu-fp32@2"):
        with pytest.raises(ConfigError):
            Candidate.parse(bad, env)


# --------------------------------------------------------------------------- a real tune of the tiny model

def test_benchmark_many_hands_each_round_to_the_caller(tiny_saved_model):
    """The hook tune interleaves its thread subprocesses with: once per timed round, with the batch size."""
    from tftrt_toolkit.runtime.benchmark import benchmark_many

    calls = []
    reports = benchmark_many({"tiny": str(tiny_saved_model)}, batch_sizes=(2,), iterations=3, warmup=0,
                             progress=False, between_rounds=calls.append)
    assert calls == [2, 2, 2] and reports["tiny"].result("optimized", 2).runs == 3


@pytest.fixture(scope="module")
def tiny_tune(tiny_saved_model, tmp_path_factory):
    """fp32 (+bf16 where the CPU has it), fp32 at one thread (a subprocess) and int8 (fails: 16 samples are too few)."""
    names = ["cpu-fp32"] + (["cpu-bf16"] if probe().cpu_has_bf16 else []) + ["cpu-fp32@1x1", "cpu-int8"]
    out = tmp_path_factory.mktemp("tune") / "tuned"
    lines = []
    # The time budget is not under test here (see test_a_spent_time_budget_...): a generous one, so a
    # slow or loaded machine never skips the thread subprocess these tests look at.
    result = tune(str(tiny_saved_model), "synthetic:16", str(out), candidates=names, duration=0.2,
                  progress=lines.append, time_budget=3600)
    return result, out, lines


def test_tune_writes_the_chosen_model_and_the_table_files(tiny_tune, tiny_saved_model, random_images):
    import tensorflow as tf

    result, out, _ = tiny_tune
    assert result.output == str(out)
    assert sorted(os.listdir(out.parent)) == ["tuned", "tuned.tune"], "no work or staging dirs left behind"
    assert set(os.listdir(out)) <= {"saved_model.pb", "variables", "assets", "assets.extra", "fingerprint.pb"}
    tuned = tf.saved_model.load(str(out)).signatures["serving_default"]
    original = tf.saved_model.load(str(tiny_saved_model)).signatures["serving_default"]
    np.testing.assert_allclose(tuned(images=tf.constant(random_images))["probabilities"].numpy(),
                               original(images=tf.constant(random_images))["probabilities"].numpy(), atol=0.05)
    assert sorted(os.listdir(result.report_dir)) == ["benchmark.csv", "benchmark.json", "tune.csv", "tune.json", "tune.png"]
    assert open(os.path.join(result.report_dir, "tune.png"), "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_the_chosen_model_records_why(tiny_tune):
    result, out, _ = tiny_tune
    chosen_by = json.loads((out / "assets.extra" / "tftrt_toolkit.json").read_text())["chosen_by"]
    assert chosen_by["tool"] == "tune" and chosen_by["candidate"] == result.chosen["candidate"]
    assert chosen_by["reason"] == result.reason and chosen_by["budget"]["metric"] == "top1_agreement"
    assert [r["candidate"] for r in chosen_by["table"]] == [r["candidate"] for r in result.table]
    assert result.chosen_model.precision == result.chosen["precision"]


def test_every_candidate_has_a_row_and_failures_do_not_stop_the_search(tiny_tune):
    result, _, lines = tiny_tune
    rows = {r["candidate"]: r for r in result.table}
    assert rows["original"]["status"] == "original" and rows["original"]["p50_ms"] > 0
    assert rows["cpu-int8"]["status"] == "failed" and rows["cpu-int8"]["reason"]
    assert any(line.startswith("[") and "cpu-int8: failed" in line for line in lines)
    measured = [r for r in result.table if r["status"] == "measured"]
    assert {r["candidate"] for r in measured} >= {"cpu-fp32", "cpu-fp32 intra=1 inter=1"}
    for r in measured:
        assert r["top1_agreement"] == 1.0 or r["precision"] != "fp32"
        assert r["p50_ms"] > 0 and r["throughput"] > 0 and r["speedup"] > 0
    assert rows["cpu-fp32 intra=1 inter=1"]["measured_in"].startswith("subprocess at intra=1 inter=1, its rounds interleaved")
    # The choice is choose() on the table: the fastest inside the budget.
    assert result.chosen is choose(result.table, min_top1_agreement=0.99)[0]
    inside = [r for r in measured if r["within_budget"]]
    assert result.chosen["p50_ms"] == min(r["p50_ms"] for r in inside)


def test_table_files_and_notebook_views_agree(tiny_tune):
    result, _, _ = tiny_tune
    saved = json.load(open(os.path.join(result.report_dir, "tune.json")))
    assert saved["chosen"] == result.chosen["candidate"] and saved["budget"]["limit"] == 0.99
    with open(os.path.join(result.report_dir, "tune.csv")) as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == TABLE_COLUMNS
        assert [r["candidate"] for r in reader] == [r["candidate"] for r in result.table]
    assert result.to_markdown().startswith("| candidate | status | top-1 agreement |")
    assert "| CHOSEN |" in result.to_markdown()
    assert repr(result).startswith(f"TuneResult(chosen {result.chosen['candidate']!r}: p50")


def test_only_other_threads_the_original_paces_the_rounds(tiny_saved_model, tmp_path):
    result = tune(str(tiny_saved_model), "synthetic:8", str(tmp_path / "tuned"), candidates=["cpu-fp32@1x1"],
                  duration=0.1, progress=lambda m: None, time_budget=3600)  # generous: see tiny_tune
    assert result.chosen["candidate"] == "cpu-fp32 intra=1 inter=1"
    assert result.table[0]["p50_ms"] > 0 and result.table[0]["status"] == "original"
    assert json.loads((tmp_path / "tuned" / "assets.extra" / "tftrt_toolkit.json").read_text())["chosen_by"]["threads"] == {
        "intra_op_threads": 1, "inter_op_threads": 1}


def test_a_spent_time_budget_skips_candidates_writes_the_table_and_raises(tiny_saved_model, tmp_path):
    out = tmp_path / "tuned"
    with pytest.raises(NoCandidateInBudget) as caught:
        tune(str(tiny_saved_model), "synthetic:8", str(out), candidates=["cpu-fp32"], time_budget=0.001,
             progress=lambda m: None)
    assert "no candidate could be measured (cpu-fp32: time budget: not reached)" in str(caught.value)
    assert caught.value.exit_code == 8 and caught.value.result.chosen is None
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["tuned.tune"]


def test_a_wordnet_named_folder_makes_the_budget_an_accuracy_drop_with_its_interval(tiny_saved_model, tmp_path):
    from PIL import Image

    images = tmp_path / "labelled"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i, wordnet_id in enumerate(["n01440764", "n01443537", "n01484850", "n01491361"] * 2):  # classes 0..3
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / f"{wordnet_id}_{i}.png")
    result = tune(str(tiny_saved_model), str(images), str(tmp_path / "tuned"), candidates=["cpu-fp32"],
                  duration=0.1, progress=lambda message: None)
    assert result.budget.metric == "top1_drop"
    fp32 = next(r for r in result.table if r["candidate"] == "cpu-fp32")
    assert fp32["labelled_images"] == 8 and fp32["top1_drop"] == 0.0
    assert fp32["top1_drop_low"] < 0 < fp32["top1_drop_high"]  # no discordant image: an interval around zero
    assert any("[" in line and "pt" in line for line in result.table_lines())


def test_tune_on_token_ids_keeps_the_transformer_and_refuses_a_partial_int8(tiny_transformer_saved_model, tmp_path):
    # Synthetic data for an int32 [?, 64] input is token ids in [0, 100), inside the model's vocabulary.
    result = tune(str(tiny_transformer_saved_model), "synthetic:64", str(tmp_path / "tuned"),
                  candidates=["cpu-fp32", "cpu-int8"], duration=0.1, progress=lambda m: None)
    rows = {r["candidate"]: r for r in result.table}
    assert rows["cpu-fp32"]["status"] == "measured" and rows["cpu-fp32"]["top1_agreement"] == 1.0
    assert result.chosen["candidate"] == "cpu-fp32"
    # int8 quantizes 43% of the multiply-adds (attention's Einsums stay fp32): refused, with the share, not measured.
    assert rows["cpu-int8"]["status"] == "failed"
    from tftrt_toolkit.backends.cpu.int8.quantize import _import_inc
    from tftrt_toolkit.errors import BackendUnavailable

    try:
        _import_inc()
    except BackendUnavailable:  # without the cpu-int8 extra it fails for that reason instead
        return
    assert "int8 covers only 43% of the model's multiply-adds" in rows["cpu-int8"]["reason"]
