"""The notebook API exported from the package: `import tftrt_toolkit as tt` and five lines."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

import tftrt_toolkit as tt
from tftrt_toolkit import ConversionConfig
from tftrt_toolkit.errors import ConfigError, ModelLoadError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_python(code: str, cwd, timeout: int = 900) -> dict:
    """Run ``code`` in a fresh interpreter (cwd ``cwd``); it prints one JSON line last, which is returned."""
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_package_stays_cheap(tmp_path):
    found = _run_python("""
        import json, sys
        import tftrt_toolkit as tt
        names = [tt.ConversionConfig.__name__, tt.ConfigError.__name__]
        print(json.dumps({"tensorflow": "tensorflow" in sys.modules, "api": "tftrt_toolkit.api" in sys.modules}))
    """, cwd=tmp_path)
    assert found == {"tensorflow": False, "api": False}


def test_the_five_lines_in_a_fresh_process_on_a_tiny_model(tmp_path, tiny_saved_model):
    # The README's five lines, on the tiny fixture model and short timings so the test stays fast.
    found = _run_python(f"""
        import json, os
        import tftrt_toolkit as tt
        m = tt.convert({str(tiny_saved_model)!r}, "out/tiny-fp32", precision="fp32", backend="cpu")
        v = m.validate(data="synthetic:8")
        b = m.benchmark(batch_sizes=[1, 8], duration=0.2)
        r = tt.run({str(tiny_saved_model)!r}, output_dir="report", precisions=["fp32"], batch_sizes=[1], duration=0.2)
        print(json.dumps({{
            "model": type(m).__name__, "path": os.fspath(m), "passed": bool(v), "validation": type(v).__name__,
            "batch_sizes": [s["batch_size"] for s in b.to_json()["speedups"]],
            "run_rows": [row.name for row in r.rows], "report": os.path.exists("report/report.md"),
        }}))
    """, cwd=tmp_path)
    assert found == {
        "model": "OptimizedModel", "path": str(tmp_path / "out" / "tiny-fp32"), "passed": True,
        "validation": "ValidationReport", "batch_sizes": [1, 8], "run_rows": ["original", "cpu-fp32"], "report": True,
    }


@pytest.mark.slow
def test_the_five_lines_as_written_on_the_shipped_model(tmp_path):
    # Exactly the README's lines; run where saved_models/ resolves as it does from the repo root,
    # without writing out/ and tftrt-report/ into the checkout.
    os.symlink(os.path.join(REPO, "saved_models"), tmp_path / "saved_models")
    found = _run_python("""
        import json, os
        import tftrt_toolkit as tt
        m = tt.convert("saved_models/efficientnet_lite0", "out/lite0-fp32", precision="fp32")
        v = m.validate(data="saved_models/samples")          # ValidationReport, truthy on pass
        b = m.benchmark(batch_sizes=[1, 8])                  # against its source model, interleaved
        r = tt.run()                                         # the main job; tt.tune(...), tt.predict(...) likewise
        print(json.dumps({"passed": bool(v), "baseline": b.has_baseline, "speedups": len(b.speedups),
                          "report": os.path.exists(os.path.join(r.output_dir, "report.md"))}))
    """, cwd=tmp_path, timeout=1800)
    assert found == {"passed": True, "baseline": True, "speedups": 2, "report": True}


# --------------------------------------------------------------------------- in this process

@pytest.fixture(scope="module")
def optimized(tiny_saved_model, tmp_path_factory):
    return tt.convert(str(tiny_saved_model), str(tmp_path_factory.mktemp("api") / "fp32"), backend="cpu",
                      precision="fp32", progress=False)


def test_an_optimized_model_is_path_like_and_knows_its_source(optimized, tiny_saved_model):
    assert os.fspath(optimized) == optimized.path and os.path.isdir(optimized)
    assert optimized.source_spec.location == str(tiny_saved_model)
    assert json.loads(json.dumps(optimized.to_json()))["path"] == optimized.path
    # Any API that takes a model takes it.
    assert len(tt.predict(optimized, "synthetic:2", top_k=1)) == 2


def test_config_fields_as_keywords_or_a_config(tiny_saved_model, tmp_path):
    m = tt.convert(str(tiny_saved_model), str(tmp_path / "a"), ConversionConfig(backend="cpu"), minimum_segment_size=5,
                   progress=False)
    assert m.metadata["config"]["minimum_segment_size"] == 5 and m.backend == "cpu" and m.precision == "fp32"
    with pytest.raises(ConfigError, match="precision='fp64' is not valid"):
        tt.convert(str(tiny_saved_model), str(tmp_path / "b"), precision="fp64", progress=False)
    assert not (tmp_path / "b").exists()


def test_validation_report_renders_saves_and_is_truthy(optimized, tmp_path):
    report = optimized.validate(data="synthetic:8", progress=False)
    assert report and isinstance(report, tt.ValidationReport)
    markdown = report._repr_markdown_()
    assert markdown.startswith("**PASS**") and "| output | max abs error |" in markdown
    path = report.save(str(tmp_path / "validation.json"))
    assert json.load(open(path))["passed"] is True
    strict = optimized.validate(data="synthetic:8", atol=0.0, rtol=0.0, min_within_tolerance=1.0, progress=False)
    assert strict._repr_markdown_().startswith("**FAIL**") or strict  # bit-exact is possible, never a wrong verdict


def test_benchmark_report_renders_plots_and_saves_the_cli_files(optimized, tmp_path):
    from matplotlib.figure import Figure

    report = optimized.benchmark(batch_sizes=[1, 2], iterations=3, warmup=0, progress=False)
    assert report.has_baseline and report.models["baseline"]["model"] == optimized.source_spec.location
    assert "| batch size | baseline p50 (ms) |" in report._repr_markdown_()
    assert isinstance(report.plot(), Figure)
    paths = report.save(str(tmp_path / "bench"))
    assert sorted(paths) == ["benchmark.csv", "benchmark.json", "benchmark.png"]
    assert json.load(open(paths["benchmark.json"]))["settings"]["batch_sizes"] == [1, 2]
    alone = optimized.benchmark(batch_sizes=[1], iterations=3, warmup=0, compare=False, progress=False)
    assert not alone.has_baseline


def test_plot_without_matplotlib_says_how_to_install_it(optimized, monkeypatch):
    report = optimized.benchmark(batch_sizes=[1], iterations=2, warmup=0, progress=False)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[plot\]"'):
        report.plot()


def test_prediction_result_renders_and_saves(optimized, tmp_path):
    result = optimized.predict("synthetic:3")
    assert "| input | outputs |" in result._repr_markdown_()
    path = result.save(str(tmp_path / "predictions.csv"))
    assert open(path).readline().strip() == "image,output,shape,values"


def test_a_gone_source_model_is_one_clear_error(tiny_saved_model, tmp_path):
    import shutil

    source = tmp_path / "source"
    shutil.copytree(tiny_saved_model, source)
    m = tt.convert(str(source), str(tmp_path / "fp32"), backend="cpu", progress=False)
    shutil.rmtree(source)
    with pytest.raises(ModelLoadError, match="is gone; pass original=/baseline= explicitly"):
        m.validate()
    assert m.validate(original=str(tiny_saved_model), data="synthetic:4", progress=False)
