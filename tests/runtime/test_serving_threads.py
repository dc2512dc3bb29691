"""Serving-shaped threading: the choice from a measurement, and the model's choice applied where it loads.

Speed is not asserted (the machine decides which setting wins); the mechanism is: what is
chosen follows the measurement, says why, and ModelRunner / batch-predict's workers apply it.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tftrt_toolkit import artifacts
from tftrt_toolkit.errors import ConfigError
from tftrt_toolkit.runtime.serving_threads import (
    ONE_THREAD, TF_THREADS, ThreadingMeasurement, check_objective, measure_threading, serving_choice,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def measurement(one_thread: float, tf_threads: float) -> ThreadingMeasurement:
    return ThreadingMeasurement(model="cpu-int8", batch_size=1, concurrency=2,
                                tf_threads={"intra_op_threads": 0, "inter_op_threads": 0},
                                requests_per_second={ONE_THREAD: one_thread, TF_THREADS: tf_threads},
                                latency_p50_ms={ONE_THREAD: 2.0, TF_THREADS: 3.0})


def test_throughput_serves_with_the_setting_that_measured_more_requests_and_says_so():
    choice = serving_choice(measurement(400.0, 250.0))
    assert (choice["objective"], choice["setting"]) == ("throughput", ONE_THREAD)
    assert (choice["intra_op_threads"], choice["inter_op_threads"], choice["concurrency"], choice["batch_size"]) == (1, 2, 2, 1)
    assert "400.0 requests/s at 1 intra-op thread per request against 250.0 at TF's threads" in choice["reason"]
    assert "1 thread per request won" in choice["reason"]

    # The other way round (or a tie): TF's own threads, nothing to change.
    for one, tf in ((250.0, 400.0), (300.0, 300.0)):
        choice = serving_choice(measurement(one, tf))
        assert choice["setting"] == TF_THREADS and (choice["intra_op_threads"], choice["inter_op_threads"]) == (0, 0)
        assert "TF's threads won" in choice["reason"]


def test_objective_defaults_to_throughput_at_batch_1_and_refuses_other_words():
    assert check_objective(None, 1) == "throughput" and check_objective(None, 8) == "latency"
    assert check_objective("latency", 1) == "latency"
    with pytest.raises(ConfigError, match="objective='speed' is not valid; use latency"):
        check_objective("speed", 1)


def test_measure_threading_measures_both_settings_for_every_model(tiny_saved_model):
    from tftrt_toolkit.runtime.session import ModelRunner

    with ModelRunner(str(tiny_saved_model), name="original") as original, \
            ModelRunner(str(tiny_saved_model), name="copy") as copy:
        measured = measure_threading({"original": original, "copy": copy}, batch_size=1, concurrency=2, duration=0.15)
    assert set(measured) == {"original", "copy"}
    for name, result in measured.items():
        assert result.model == name and result.concurrency == 2 and result.batch_size == 1
        assert result.requests_per_second[ONE_THREAD] > 0 and result.requests_per_second[TF_THREADS] > 0
        assert result.winner in (ONE_THREAD, TF_THREADS)
        assert result.to_json()["winner"] == result.winner


def _tuned_copy(source, destination, serving: dict) -> str:
    shutil.copytree(source, destination)
    metadata = artifacts.read_metadata(str(destination)) or {}
    metadata["chosen_by"] = {"tool": "tune", "serving": serving}
    artifacts.write_metadata(str(destination), metadata)
    return str(destination)


ONE_THREAD_CHOICE = {"objective": "throughput", "setting": ONE_THREAD, "batch_size": 1, "concurrency": 2,
                     "intra_op_threads": 1, "inter_op_threads": 2, "reason": "objective throughput: measured"}


def _in_a_fresh_process(code: str) -> dict:
    """Run ``code`` where TF has not started (threads can still be set); it prints one JSON line last."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_model_runner_serves_a_tuned_model_with_its_chosen_threads(tiny_saved_model, tmp_path):
    tuned = _tuned_copy(tiny_saved_model, tmp_path / "tuned", ONE_THREAD_CHOICE)
    code = ("import json, sys\n"
            "from tftrt_toolkit.runtime.session import ModelRunner, current_threads, configure_threads\n"
            "if sys.argv[-1] == 'explicit': configure_threads(2, 1)\n"
            f"runner = ModelRunner({tuned!r}).load()\n"
            "print(json.dumps({'threads': current_threads(), 'note': runner.threads_note,"
            " 'described': runner.describe().get('tuned_threads')}))\n")
    applied = _in_a_fresh_process(code)
    assert applied["threads"] == {"intra_op_threads": 1, "inter_op_threads": 2}
    assert applied["note"] == applied["described"] == "TF threads intra=1 inter=2, as tune chose for this model (throughput)"
    # Threads set explicitly before the model loads win, and the note says what was kept.
    kept = _in_a_fresh_process(code.replace("sys.argv[-1] == 'explicit'", "True"))
    assert kept["threads"] == {"intra_op_threads": 2, "inter_op_threads": 1}
    assert kept["note"].startswith("tune chose TF threads intra=1 inter=2 for this model; kept intra=2 inter=1")


def test_a_model_tune_did_not_choose_leaves_threads_alone(tiny_saved_model):
    code = ("import json\n"
            "from tftrt_toolkit.runtime.session import ModelRunner, current_threads\n"
            f"runner = ModelRunner({str(tiny_saved_model)!r}).load()\n"
            "print(json.dumps({'threads': current_threads(), 'note': runner.threads_note}))\n")
    assert _in_a_fresh_process(code) == {"threads": {"intra_op_threads": 0, "inter_op_threads": 0}, "note": ""}


def test_batch_predict_workers_load_a_tuned_model_with_its_chosen_threads(tiny_saved_model, tmp_path):
    pytest.importorskip("apache_beam", reason="the beam extra is not installed")
    tuned = _tuned_copy(tiny_saved_model, tmp_path / "tuned", ONE_THREAD_CHOICE)
    code = ("import json\n"
            "from tftrt_toolkit.jobs.batch_predict import SavedModelHandler\n"
            "from tftrt_toolkit.runtime.session import current_threads\n"
            f"handler = SavedModelHandler({tuned!r}, 'serving_default', 'images')\n"
            "handler.load_model()\n"
            "print(json.dumps({'threads': current_threads(), 'note': handler.threads_note}))\n")
    applied = _in_a_fresh_process(code)
    assert applied["threads"] == {"intra_op_threads": 1, "inter_op_threads": 2}
    assert "as tune chose for this model" in applied["note"]
