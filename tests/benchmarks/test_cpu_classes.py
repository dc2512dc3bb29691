"""benchmarks/cpu_classes.py: one row per CPU class from a run's report; README's table is the ledger's."""

import datetime
import json
import os

import pytest

from tftrt_toolkit import __version__
from tftrt_toolkit.backends.precisions import offered_precisions
from tftrt_toolkit.environment import probe

ROOT = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir)


@pytest.fixture(scope="module")
def cpu_classes(benchmark_script):
    with benchmark_script("cpu_classes.py") as module:
        yield module


@pytest.fixture(scope="module")
def tiny_run_report(tiny_saved_model, tmp_path_factory):
    """A real `tftrt run` report (fp32 only) on the tiny model, at the ledger's batch sizes."""
    from tftrt_toolkit.jobs.run import run_job

    out = tmp_path_factory.mktemp("cpu-classes") / "tftrt-report"
    run_job(str(tiny_saved_model), output_dir=str(out), data="synthetic:4", precisions=["fp32"], batch_sizes=(1, 8),
            duration=0.2, progress=False)
    return out / "report.json"


@pytest.fixture
def tiny_is_shipped(cpu_classes, monkeypatch, tiny_saved_model):
    """The script records only runs of the shipped model; here the tiny model stands in for it."""
    monkeypatch.setattr(cpu_classes, "SHIPPED_MODEL", str(tiny_saved_model))


def _other_class_rows(cpu_classes, here):
    """Two hand-entered rows of classes this machine is not."""
    rows = []
    for name in [n for n in cpu_classes.CLASS_NAMES if n != here][-2:]:
        rows.append({"cpu_class": name, "cpu_model": f"a {name} CPU", "cpu_features": [], "onednn_max_cpu_isa": None,
                     "onednn_default": True, "precisions_offered": ["fp32", "int8"],
                     "models": [{"precision": "int8", "speedup": {"1": 2.5, "8": 3.5}, "speedup_vs_tf_default": {},
                                 "top1": 1.0, "status": "measured", "note": ""}],
                     "original": {"top1": 1.0, "speedup_vs_tf_default": {}}, "labelled_samples": 4,
                     "top1_on": "the shipped labelled sample photos", "peers": None, "date": "2026-11-01",
                     "toolkit_version": "0.0.9", "toolkit_commit": None, "tensorflow_version": "2.17.1",
                     "run_seconds": None, "source": "by hand", "notes": [], "refresh": None})
    return rows


def _readme(tmp_path, cpu_classes):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## What each CPU gets\n\n{cpu_classes.TABLE_START}\nold table\n{cpu_classes.TABLE_END}\n\n"
                      "## Commands\n")
    return readme


def test_a_run_writes_its_class_row_and_leaves_the_others(cpu_classes, tiny_is_shipped, tiny_run_report, tmp_path):
    here = cpu_classes.cpu_class(probe().cpu_features)
    others = _other_class_rows(cpu_classes, here)
    ledger = tmp_path / "cpu-classes"
    (tmp_path / "cpu-classes.json").write_text(json.dumps({"command": cpu_classes.COMMAND, "rows": others}))
    readme = _readme(tmp_path, cpu_classes)
    argv = [f"--from_report={tiny_run_report}", f"--ledger={ledger}", f"--readme={readme}", "--note=loaded machine"]

    cpu_classes.main(argv)
    written = json.loads((tmp_path / "cpu-classes.json").read_text())

    [row] = [r for r in written["rows"] if r["cpu_class"] == here]
    assert [r for r in written["rows"] if r["cpu_class"] != here] == sorted(
        others, key=lambda r: cpu_classes.CLASS_NAMES.index(r["cpu_class"]))
    assert row["precisions_offered"] == list(offered_precisions(probe(), "cpu"))
    assert set(row["precisions_offered"]) | set(row["not_offered"]) == {"fp32", "bf16", "int8"}
    assert row["toolkit_version"] == __version__ and row["tensorflow_version"]
    assert row["date"] == datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    assert row["cpu_model"] == (probe().cpu_model or "unknown CPU")
    [fp32] = row["models"]
    assert fp32["precision"] == "fp32" and set(fp32["speedup"]) == {"1", "8"}
    assert all(v > 0 for v in fp32["speedup"].values())
    assert row["peers"] is None and "loaded machine" in row["notes"]
    # The class order is smallest first, whatever order rows were recorded in.
    assert [r["cpu_class"] for r in written["rows"]] == [n for n in cpu_classes.CLASS_NAMES
                                                          if n in {r["cpu_class"] for r in written["rows"]}]

    markdown = (tmp_path / "cpu-classes.md").read_text()
    table = cpu_classes.table_in(markdown, "cpu-classes.md")
    assert len(table.splitlines()) == 2 + 3 and f"**{here}**" in table and "not measured" in table
    assert cpu_classes.table_in(readme.read_text(), "README") == table
    assert readme.read_text().endswith("## Commands\n") and "old table" not in readme.read_text()

    # A re-run on the same class replaces its row: still one row per class, the others untouched.
    cpu_classes.main(argv[:3])
    again = json.loads((tmp_path / "cpu-classes.json").read_text())
    assert [r["cpu_class"] for r in again["rows"]] == [r["cpu_class"] for r in written["rows"]]
    assert [r for r in again["rows"] if r["cpu_class"] != here] == [r for r in written["rows"] if r["cpu_class"] != here]
    assert "loaded machine" not in [r for r in again["rows"] if r["cpu_class"] == here][0]["notes"]


def _peers_json(path, model, cpu_features):
    def row(key, family, speedups):
        return {"key": key, "label": key.replace("_", " "), "family": family, "status": "measured",
                "results": [{"batch_size": b, "latency_ms": {"p50": 10.0 / s}, "speedup_vs_tf": s}
                            for b, s in speedups.items()]}

    path.write_text(json.dumps({
        "model": model, "settings": {"cpu_model": "some CPU", "cpu_features": list(cpu_features), "threads": 2,
                                     "started_at": "2026-12-01T00:00:00+00:00"},
        "rows": [row("tf", "reference", {1: 1.0, 8: 1.0}), row("cpu_int8", "tftrt_toolkit", {1: 9.0, 8: 9.0}),
                 row("openvino_int8", "peer", {1: 4.0, 8: 2.0}), row("onnxruntime_int8", "peer", {1: 3.0, 8: 2.5})],
    }))
    return path


def test_peers_best_row_per_batch_size(cpu_classes, tiny_is_shipped, tiny_run_report, tiny_saved_model, tmp_path):
    peers = _peers_json(tmp_path / "peers.json", str(tiny_saved_model), probe().cpu_features)

    ledger = cpu_classes.main([f"--from_report={tiny_run_report}", f"--peers_json={peers}",
                               f"--ledger={tmp_path / 'cc'}", "--readme=none"])

    [row] = ledger["rows"]
    best = row["peers"]["best"]  # our own rows (family tftrt_toolkit) are not peers
    assert (best["1"]["label"], best["1"]["speedup"]) == ("openvino int8", 4.0)
    assert (best["8"]["label"], best["8"]["speedup"]) == ("onnxruntime int8", 2.5)
    assert "bs1 openvino int8 4.00×; bs8 onnxruntime int8 2.50×" in (tmp_path / "cc.md").read_text()


def test_peers_of_another_cpu_class_are_refused_and_nothing_is_written(cpu_classes, tiny_is_shipped, tiny_run_report,
                                                                       tiny_saved_model, tmp_path):
    here = cpu_classes.cpu_class(probe().cpu_features)
    other = ["avx2", "fma"] if here != "AVX2" else ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"]
    peers = _peers_json(tmp_path / "peers.json", str(tiny_saved_model), other)

    with pytest.raises(SystemExit, match=f"measured on a {cpu_classes.cpu_class(other)} CPU .* but this row is"):
        cpu_classes.main([f"--from_report={tiny_run_report}", f"--peers_json={peers}",
                          f"--ledger={tmp_path / 'cc'}", "--readme=none"])
    assert sorted(os.listdir(tmp_path)) == ["peers.json"]


def test_a_run_of_another_model_is_refused(cpu_classes, tiny_run_report, tmp_path):
    with pytest.raises(SystemExit, match="not of the shipped model"):
        cpu_classes.main([f"--from_report={tiny_run_report}", f"--ledger={tmp_path / 'cc'}", "--readme=none"])
    assert os.listdir(tmp_path) == []


def test_an_imitated_class_does_not_replace_a_real_cpus_row(cpu_classes, tiny_is_shipped, tiny_run_report, tmp_path,
                                                            monkeypatch):
    here = cpu_classes.cpu_class(probe().cpu_features)
    [real] = [dict(row, cpu_class=here) for row in _other_class_rows(cpu_classes, here)[:1]]
    (tmp_path / "cc.json").write_text(json.dumps({"command": cpu_classes.COMMAND, "rows": [real]}))
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")  # "imitating" this class on this CPU

    with pytest.raises(SystemExit, match=f"the {here} row was measured on a real {here} CPU"):
        cpu_classes.main([f"--from_report={tiny_run_report}", f"--ledger={tmp_path / 'cc'}", "--readme=none"])
    assert json.loads((tmp_path / "cc.json").read_text())["rows"] == [real]
    assert not (tmp_path / "cc.md").exists()

    # Over no row (or an imitated one), an imitation is recorded, and says so.
    (tmp_path / "cc.json").unlink()
    [row] = cpu_classes.main([f"--from_report={tiny_run_report}", f"--ledger={tmp_path / 'cc'}", "--readme=none"])["rows"]
    assert row["onednn_max_cpu_isa"] == "AVX512_CORE_AMX" and row["notes"][0].startswith("imitated")


def test_render_rewrites_the_markdown_and_the_readme_from_the_json_only(cpu_classes, tmp_path):
    ledger = {"command": cpu_classes.COMMAND, "rows": _other_class_rows(cpu_classes, "AMX")}
    (tmp_path / "cc.json").write_text(json.dumps(ledger))
    readme = _readme(tmp_path, cpu_classes)

    cpu_classes.main(["--render", f"--ledger={tmp_path / 'cc'}", f"--readme={readme}"])

    assert json.loads((tmp_path / "cc.json").read_text()) == ledger
    assert (tmp_path / "cc.md").read_text() == cpu_classes.markdown(ledger)
    assert cpu_classes.table_in(readme.read_text(), "README") == cpu_classes.table(ledger)
    with pytest.raises(SystemExit):  # --render records no row: a report or a peers file with it is a mistake
        cpu_classes.main(["--render", "--from_report=x.json", f"--ledger={tmp_path / 'cc'}"])


def test_a_readme_without_the_table_markers_is_refused_before_any_work(cpu_classes, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no table here\n")
    with pytest.raises(SystemExit, match="no cpu-classes table markers"):
        cpu_classes.main([f"--ledger={tmp_path / 'cc'}", f"--readme={readme}"])
    assert sorted(os.listdir(tmp_path)) == ["README.md"]


def test_failed_and_rejected_precisions_are_shown_with_their_reason(cpu_classes):
    report = {"rows": [
        {"name": "original", "precision": "fp32", "speedup_vs_tf_default": {}},
        {"name": "cpu-fp32", "precision": "fp32", "speedup": {"1": 1.5, "8": 1.7}, "validation_passed": True, "note": ""},
        {"name": "cpu-int8", "precision": "int8", "speedup": {"1": 2.0, "8": 3.0}, "validation_passed": True,
         "note": "rejected: below the int8 accuracy threshold"},
    ], "notes": ["bf16: not converted, the run goes on without it: the converter ran out of memory"]}

    models = cpu_classes.models_of(report)

    assert [(m["precision"], m["status"]) for m in models] == [
        ("fp32", "measured"), ("int8", "measured, rejected"), ("bf16", "failed")]
    assert models[2]["note"] == "not converted, the run goes on without it: the converter ran out of memory"
    row = {"models": models}
    assert cpu_classes._speedups(row, "speedup") == "fp32 1.50× / 1.70×; int8 2.00× / 3.00× (rejected); bf16 failed"


def test_cpu_class_names_the_instruction_sets_that_matter(cpu_classes):
    assert cpu_classes.cpu_class(["sse4_1", "avx", "avx2", "fma"]) == "AVX2"
    assert cpu_classes.cpu_class(["avx2", "fma", "avx_vnni"]) == "AVX2-VNNI"
    assert cpu_classes.cpu_class(["avx2", "avx512f", "avx512bw"]) == "AVX512"
    assert cpu_classes.cpu_class(["avx2", "avx512f", "avx512_vnni"]) == "AVX512-VNNI"
    assert cpu_classes.cpu_class(["avx2", "avx512f", "avx512_vnni", "avx512_bf16"]) == "AVX512-BF16/VNNI"
    assert cpu_classes.cpu_class(["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16"]) == "AMX"
    assert cpu_classes.cpu_class(["sse4_1", "avx"]) == "below AVX2"


def test_a_row_older_than_the_current_version_is_due_for_a_refresh(cpu_classes):
    row = {"toolkit_version": "0.1.0", "refresh": None}
    assert cpu_classes.due_for_refresh(row, "0.2.0") == "measured with toolkit 0.1.0, older than 0.2.0"
    assert cpu_classes.due_for_refresh(row, "0.1.0") is None
    assert cpu_classes.due_for_refresh(dict(row, refresh="made with a local fix"), "0.1.0") == "made with a local fix"


def test_the_readme_table_is_the_ledgers_and_the_ledger_is_rendered_from_its_json(cpu_classes):
    results = os.path.join(ROOT, "benchmarks", "results")
    with open(os.path.join(results, "cpu-classes.json"), encoding="utf-8") as handle:
        ledger = json.load(handle)
    with open(os.path.join(results, "cpu-classes.md"), encoding="utf-8") as handle:
        markdown = handle.read()
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()

    assert markdown == cpu_classes.markdown(ledger), "cpu-classes.md differs from its JSON: run python benchmarks/cpu_classes.py --render"
    assert cpu_classes.table_in(readme, "README.md") == cpu_classes.table_in(markdown, "cpu-classes.md"), (
        "README's 'What each CPU gets' table differs from benchmarks/results/cpu-classes.md: "
        "run python benchmarks/cpu_classes.py --render")
    assert readme.index("## What each CPU gets") < readme.index(cpu_classes.TABLE_START)
    assert cpu_classes.REFRESH_RULE in " ".join(readme.split()) and cpu_classes.REFRESH_RULE in markdown
    rows = ledger["rows"]
    assert len({row["cpu_class"] for row in rows}) == len(rows) >= 3
    assert all(row["date"] and row["toolkit_version"] and row["tensorflow_version"] and row["cpu_model"] for row in rows)
