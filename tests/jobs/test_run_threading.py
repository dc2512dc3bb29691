"""run: each model at its best serving threading beside the original at TF's default, and which won."""

import json


def test_run_reports_each_model_at_both_threadings_and_the_winner(tiny_saved_model, tmp_path):
    from tftrt_toolkit.jobs.run import run_job

    report = run_job(str(tiny_saved_model), output_dir=str(tmp_path / "report"), data="synthetic:8",
                     precisions=["fp32"], batch_sizes=(1,), duration=0.1, progress=False)
    threading = json.load(open(tmp_path / "report" / "threading.json"))
    assert set(threading) == {"original", "cpu-fp32"}
    for name, measured in threading.items():
        rates = measured["requests_per_second"]
        assert rates["one_thread_per_request"] > 0 and rates["tf_threads"] > 0
        winner = "one_thread_per_request" if rates["one_thread_per_request"] > rates["tf_threads"] else "tf_threads"
        assert measured["winner"] == winner
        won = "1 thread per request won" if winner == "one_thread_per_request" else "TF's threads won"
        assert any(note.startswith(f"serving threading, {name}: ") and note.endswith(won) for note in report.notes)
    assert any(note.startswith("serving threading: cpu-fp32 at its best threading serves ") and
               "for the original at TF's default threads" in note for note in report.notes)
    assert report.files["threading.json"] == "threading.json"
