"""The run report with labelled images: an accuracy column with the drop and its interval, and its own section."""

import types

from tftrt_toolkit.report.run_report import ModelRow, RunReport, markdown_report

ACCURACY = {"labels": "WordNet ids in the image names under photos", "labelled_samples": 750, "top_k": 5,
            "original": {"top1": 0.8067, "topk": 0.9573}, "optimized": {"top1": 0.7907, "topk": 0.948},
            "top1_drop": 0.016, "top1_drop_interval": [0.001, 0.031],
            "top1_only_original_right": 30, "top1_only_optimized_right": 18}


def _report():
    rows = [ModelRow("original", "m", "-", "fp32", accuracy={"top1": 0.8067, "topk": 0.9573, "labelled_samples": 750}),
            ModelRow("cpu-int8", "out/int8", "cpu", "int8", top1_agreement=0.908, accuracy=ACCURACY)]
    return RunReport(output_dir="out", model="m", data="photos", environment="cpu", batch_sizes=[1], rows=rows,
                     files={}, seconds=1.0)


def test_the_table_gives_each_models_accuracy_and_the_drop_with_its_interval():
    header, original, int8 = _report()._table()
    assert header[5] == "top-1 accuracy (n=750)"
    assert original[5] == "80.7%"
    assert int8[5] == "79.1% (drop +1.6 pt [+0.1, +3.1])"


def test_the_markdown_report_names_the_labels_and_the_images_that_decide_the_drop():
    env = types.SimpleNamespace(cpu_model="AMD EPYC", cpu_count=2, cpu_features=("avx2",), gpus=(), tensorflow_version="2.17.1")
    text = markdown_report(_report(), env)
    assert "## Accuracy on labelled images" in text and "750 images labelled by WordNet ids" in text
    assert "drop +1.60 points (95% interval +0.10 to +3.10; only the original right on 30, only this model on 18)" in text


def test_without_labels_there_is_no_accuracy_column():
    report = _report()
    for row in report.rows:
        row.accuracy = None
    assert not any(cell.startswith("top-1 accuracy") for cell in report._table()[0])
