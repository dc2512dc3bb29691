"""tftrt predict as users run it: JSON, JSON Lines and CSV, threads, one-line errors."""

import csv
import io
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_MODEL = os.path.join(ROOT, "saved_models", "efficientnet_lite0")
SAMPLES = os.path.join(ROOT, "saved_models", "samples")
CAT = os.path.join(SAMPLES, "cat.jpg")

def test_predict_cat_on_the_shipped_model_json(run_cli):
    result = run_cli("predict", f"--model={DEFAULT_MODEL}", f"--data={CAT}", "--top_k=3")
    data = json.loads(result.out)
    assert data["softmax_applied"] is False and data["labels"] == "imagenet1000"
    (record,) = data["results"]
    assert record["image"] == CAT
    top1 = record["predictions"][0]
    assert 281 <= top1["class_id"] <= 285 and top1["label"] in ("tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat")
    assert [p["rank"] for p in record["predictions"]] == [1, 2, 3]


def test_predict_csv_file_one_row_per_image_and_rank(run_cli, tmp_path):
    out = tmp_path / "predictions.csv"
    run_cli("predict", f"--model={DEFAULT_MODEL}", f"--data={SAMPLES}", f"--output={out}")  # .csv picks the format
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 4 * 5
    assert list(rows[0]) == ["image", "rank", "class_id", "label", "probability"]
    # An existing output is not replaced silently.
    result = run_cli("predict", f"--model={DEFAULT_MODEL}", f"--data={CAT}", f"--output={out}", expect_exit=7)
    assert "--overwrite" in result.err
    run_cli("predict", f"--model={DEFAULT_MODEL}", f"--data={CAT}", f"--output={out}", "--overwrite", "--format=json")
    assert json.loads(out.read_text())["results"][0]["image"] == CAT


def test_predict_errors(run_cli, tmp_path, tiny_saved_model):
    result = run_cli("predict", f"--model={tmp_path / 'no_such_model'}", f"--data={CAT}", expect_exit=3)
    assert len(result.err.strip().splitlines()) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("predict", f"--model={tiny_saved_model}", f"--data={empty}", expect_exit=4)
    assert "no images" in result.err and len(result.err.strip().splitlines()) == 1
    run_cli("predict", f"--model={tiny_saved_model}", expect_exit=2)  # --data is required


def test_predict_records_threads_and_refuses_late_changes(run_cli, tiny_saved_model):
    result = run_cli("predict", f"--model={tiny_saved_model}", "--data=synthetic:2", "--intra_op_threads=0")
    assert json.loads(result.out)["settings"]["intra_op_threads"] == 0
    # TF's runtime already started in this test process, so other values cannot apply any more.
    result = run_cli("predict", f"--model={tiny_saved_model}", "--data=synthetic:2", "--intra_op_threads=7", expect_exit=2)
    assert "intra_op_threads=7" in result.err


def test_predict_jsonl_prints_one_record_per_line(run_cli, tiny_saved_model):
    import json as json_module

    result = run_cli("predict", f"--model={tiny_saved_model}", "--data=synthetic:3", "--format=jsonl")
    lines = result.out.strip().splitlines()
    assert len(lines) == 3
    assert all("image" in json_module.loads(line) for line in lines)
