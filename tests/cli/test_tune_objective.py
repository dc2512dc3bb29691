"""tftrt tune --batch_size=1 as users run it: the serving threading it chose, and why, then serving-config carrying it."""

import json
import os


def test_tune_at_batch_1_says_how_to_serve_and_serving_config_writes_it(tftrt, tiny_saved_model, tmp_path):
    base = tmp_path / "tiny"
    code, out, err = tftrt("tune", f"--model={tiny_saved_model}", "--data=synthetic:8", f"--output={base / '1'}",
                           "--batch_size=1", "--candidates=cpu-fp32", "--duration=0.1")
    assert code == 0, err
    why = next(line for line in out.splitlines() if line.startswith("why: "))
    assert why.startswith("why: objective throughput: cpu-fp32: ") and "requests in flight at batch 1" in why
    serving = json.load(open(base / "1" / "assets.extra" / "tftrt_toolkit.json"))["chosen_by"]["serving"]
    assert why == f"why: {serving['reason']}"

    code, out, err = tftrt("serving-config", f"--model_base_path={base}", "--name=tiny", f"--output={tmp_path / 'cfg'}")
    assert code == 0, err
    batching = open(tmp_path / "cfg" / "batching_parameters.txt").read()
    assert f"num_batch_threads {{ value: {serving['concurrency']} }}" in batching
    assert f"# why: {serving['reason']}" in batching
    if serving["intra_op_threads"] == 1:
        assert "--tensorflow_intra_op_parallelism=1" in out
        assert f"--tensorflow_inter_op_parallelism={serving['inter_op_threads']}" in out


def test_tune_refuses_an_unknown_objective(tftrt, tiny_saved_model, tmp_path):
    code, _, err = tftrt("tune", f"--model={tiny_saved_model}", "--data=synthetic:8", f"--output={tmp_path / 'o'}",
                         "--objective=fastest")
    assert code != 0 and "objective" in err and "Traceback" not in err
    assert os.listdir(tmp_path) == []
