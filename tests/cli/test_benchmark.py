"""tftrt benchmark as users run it: the files it writes, JSON on stdout, flag errors."""

import csv
import io
import json

def test_benchmark_with_baseline_writes_json_csv_png(run_cli, tiny_saved_model, fp32_conversion, tmp_path):
    plot = "--plot"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        plot = "--noplot"
    out = tmp_path / "bench"
    result = run_cli("benchmark", f"--model={fp32_conversion}", f"--baseline={tiny_saved_model}", "--batch_sizes=1,2",
                     "--warmup=0", "--iterations=2", f"--output={out}", plot)
    assert "speed-up" in result.out.splitlines()[0]
    report = json.loads((out / "benchmark.json").read_text())
    assert [s["batch_size"] for s in report["speedups"]] == [1, 2]
    assert all(r["runs"] == 2 for r in report["results"])
    rows = list(csv.DictReader(io.StringIO((out / "benchmark.csv").read_text())))
    # Where tftrt's oneDNN setting differs from plain TF's default, the original is timed that way too.
    roles = ["baseline", "optimized"] + (["baseline_tf_default"] if report["settings"]["onednn"]["baseline_tf_default_measured"] else [])
    assert [(r["role"], r["batch_size"]) for r in rows] == [(role, size) for size in ("1", "2") for role in roles]
    if plot == "--plot":
        assert (out / "benchmark.png").read_bytes()[:4] == b"\x89PNG"
    # A second run into the same directory needs --overwrite, and is refused before measuring.
    run_cli("benchmark", f"--model={fp32_conversion}", "--batch_sizes=1", "--iterations=1", f"--output={out}", expect_exit=7)


def test_benchmark_json_to_stdout_without_output(run_cli, tiny_saved_model):
    result = run_cli("benchmark", f"--model={tiny_saved_model}", "--batch_sizes=1", "--warmup=0", "--iterations=1", "--json")
    data = json.loads(result.out)
    assert data["speedups"] == [] and data["results"][0]["runs"] == 1
    assert "p50 ms" in result.err  # the table goes to stderr when stdout carries JSON


def test_benchmark_flag_errors(run_cli, tiny_saved_model, tmp_path):
    run_cli("benchmark", f"--model={tiny_saved_model}", "--iterations=2", "--duration=1", expect_exit=2)
    result = run_cli("benchmark", f"--model={tiny_saved_model}", "--batch_sizes=1,x", expect_exit=2)
    assert "'x'" in result.err
    run_cli("benchmark", f"--model={tmp_path / 'missing'}", "--batch_sizes=1", "--iterations=1", expect_exit=3)
