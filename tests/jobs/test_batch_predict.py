"""batch-predict on Apache Beam's DirectRunner: complete sharded output with predict's fields, a dead letter for bad files.

Pipelines run in-process on the tiny model (a few seconds each); the shipped model on two
multi-processing workers is the slow end-to-end check. Tests that need Beam skip without it;
the missing-Beam tests simulate its absence and always run.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tftrt_toolkit.errors import ConfigError, DataError, OutputError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED_MODEL = os.path.join(REPO, "saved_models", "efficientnet_lite0")
SAMPLES = os.path.join(REPO, "saved_models", "samples")


def test_sharded_complete_output_has_predicts_records_and_a_dead_letter(beam, tiny_saved_model, images, labels_file, tmp_path):
    from tftrt_toolkit.jobs.batch_predict import batch_predict, read_records
    from tftrt_toolkit.runtime.predict import predict

    prefix = str(tmp_path / "out" / "predictions")
    result = batch_predict(str(tiny_saved_model), images["glob"], prefix, top_k=3, labels=labels_file,
                           num_shards=2, min_batch_size=2, max_batch_size=4)

    assert [os.path.basename(f) for f in result.prediction_files] == [
        "predictions-00000-of-00002.jsonl", "predictions-00001-of-00002.jsonl"]
    records = list(read_records(result.prediction_files))
    assert sorted(r["image"] for r in records) == sorted(images["good"])  # one record per image, none lost
    expected = predict(str(tiny_saved_model), images["good"], top_k=3, labels=labels_file)
    by_image = {r["image"]: r for r in records}
    for want in expected.records:
        got = by_image[want["image"]]
        assert set(got) == set(want) == {"image", "predictions"}
        assert [(p["rank"], p["class_id"], p["label"]) for p in got["predictions"]] == \
               [(p["rank"], p["class_id"], p["label"]) for p in want["predictions"]]
        np.testing.assert_allclose([p["probability"] for p in got["predictions"]],
                                   [p["probability"] for p in want["predictions"]], atol=1e-5)

    errors = list(read_records(result.error_files))
    assert [os.path.basename(f) for f in result.error_files] == ["predictions-errors-00000-of-00001.jsonl"]
    assert len(errors) == 1 and errors[0]["image"] == images["broken"] and errors[0]["stage"] == "decode"
    assert images["broken"] in errors[0]["error"] and "not a JPEG, PNG, GIF, TIFF, BMP or WebP image" in errors[0]["error"]

    assert (result.images_read, result.images_predicted, result.images_failed) == (7, 6, 1)
    assert result.batch_sizes["max"] <= 4 and result.labels == f"file:{labels_file}"


def test_csv_raw_outputs_without_labels(beam, tiny_saved_model, images, tmp_path):
    import csv

    from tftrt_toolkit.jobs.batch_predict import batch_predict
    from tftrt_toolkit.runtime.predict import RAW_CSV_COLUMNS

    result = batch_predict(str(tiny_saved_model), images["good"][:3], str(tmp_path / "raw"), output_format="csv")

    rows = []
    for path in result.prediction_files:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            assert tuple(reader.fieldnames) == RAW_CSV_COLUMNS
            rows.extend(reader)
    assert sorted(r["image"] for r in rows) == sorted(images["good"][:3])
    assert all(r["output"] == "probabilities" and r["shape"] == "10" for r in rows)
    assert abs(sum(json.loads(rows[0]["values"])) - 1.0) < 1e-4
    with open(result.error_files[0]) as handle:
        assert handle.read() == "image,stage,error\n"  # written, and empty: nothing failed
    assert (result.images_read, result.images_predicted, result.images_failed) == (3, 3, 0)


def test_misspelt_beam_option_is_an_error_with_a_suggestion(beam):
    from tftrt_toolkit.jobs.batch_predict import check_pipeline_args

    # Aliases count as known (--worker_machine_type is --machine_type); `--` is a command-line separator only.
    assert check_pipeline_args(["--runner=DirectRunner", "--", "--direct_num_workers", "2", "--worker_machine_type=n1"]) == [
        "--runner=DirectRunner", "--direct_num_workers", "2", "--worker_machine_type=n1"]
    with pytest.raises(ConfigError, match="did you mean --machine_type"):
        check_pipeline_args(["--machine-type=n1"])  # Beam would drop this one with a log line
    with pytest.raises(ConfigError, match="unexpected argument 'extra'"):
        check_pipeline_args(["--direct_num_workers", "2", "extra"])
    with pytest.raises(ConfigError, match=r"--direct_num_worker: not a batch-predict flag.*did you mean --direct_num_workers"):
        check_pipeline_args(["--direct_num_worker=2"])
    with pytest.raises(ConfigError, match="did you mean --top_k"):
        check_pipeline_args(["--top-k=3"], other_flags=["top_k"])


def test_bad_requests_fail_before_the_pipeline(beam, tiny_saved_model, images, tmp_path):
    from tftrt_toolkit.jobs.batch_predict import batch_predict

    with pytest.raises(DataError, match="no files match"):
        batch_predict(str(tiny_saved_model), str(tmp_path / "nothing" / "*.jpg"), str(tmp_path / "p"))
    with pytest.raises(ConfigError, match="min_batch_size=8 is larger than max_batch_size=4"):
        batch_predict(str(tiny_saved_model), images["glob"], str(tmp_path / "p"), min_batch_size=8, max_batch_size=4)
    with pytest.raises(ConfigError, match="output format 'parquet'"):
        batch_predict(str(tiny_saved_model), images["glob"], str(tmp_path / "p"), output_format="parquet")
    (tmp_path / "p-00000-of-00001.jsonl").write_text("{}\n")
    with pytest.raises(OutputError, match="--overwrite"):
        batch_predict(str(tiny_saved_model), images["glob"], str(tmp_path / "p"))


def test_overwrite_removes_only_earlier_shards(beam, tmp_path):
    from tftrt_toolkit.jobs.batch_predict import prepare_output

    for name in ("p-00000-of-00002.jsonl", "p-00001-of-00002.jsonl", "p-errors-00000-of-00001.jsonl",
                 "p-notes.txt", "p-summary.jsonl"):
        (tmp_path / name).write_text("x\n")
    prepare_output(str(tmp_path / "p"), "jsonl", overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["p-notes.txt", "p-summary.jsonl"]


def test_unreadable_file_goes_to_the_dead_letter(beam, tiny_saved_model):
    from tftrt_toolkit.jobs.batch_predict import ReadAndDecodeFn, plan_model

    class Unreadable:
        class metadata:
            path = "gs://bucket/gone.jpg"

        def read(self):
            raise PermissionError("403 Forbidden")

    decode = ReadAndDecodeFn(plan_model(str(tiny_saved_model)))
    decode.setup()
    try:
        (output,) = list(decode.process(Unreadable()))
    finally:
        decode.teardown()
    assert output.tag == "failed"
    assert output.value == {"image": "gs://bucket/gone.jpg", "stage": "read",
                            "error": "cannot read gs://bucket/gone.jpg: PermissionError: 403 Forbidden"}


def test_softmax_only_for_logits(tiny_saved_model, labels_file):
    from tftrt_toolkit.jobs.batch_predict import plan_model, prediction_record

    plan = plan_model(str(tiny_saved_model), labels=labels_file)
    probabilities = np.full(10, 0.1, dtype=np.float32)
    probabilities[3] = 0.19
    probabilities[0] = 0.01
    record = prediction_record("a.jpg", {"probabilities": probabilities}, plan, top_k=1)
    assert record == {"image": "a.jpg", "predictions": [{"rank": 1, "class_id": 3, "label": "class 3", "probability": 0.19}]}
    logits = np.zeros(10, dtype=np.float32)
    logits[7] = 5.0
    (top,) = prediction_record("a.jpg", {"probabilities": logits}, plan, top_k=1)["predictions"]
    assert top["class_id"] == 7 and top["probability"] == pytest.approx(np.exp(5) / (np.exp(5) + 9), abs=1e-6)


def test_modules_import_without_beam():
    code = ("import sys; sys.modules['apache_beam'] = None\n"
            "import tftrt_toolkit.jobs.batch_predict, tftrt_toolkit.cli.batch_predict\n"
            "assert tftrt_toolkit.jobs.batch_predict.steps.beam is None")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


@pytest.mark.slow
def test_shipped_model_on_two_multiprocessing_workers(beam, tmp_path):
    import csv
    import shutil

    from tftrt_toolkit.jobs.batch_predict import batch_predict, read_records

    data = tmp_path / "photos"
    data.mkdir()
    for name in os.listdir(SAMPLES):
        if name.endswith(".jpg"):
            shutil.copy(os.path.join(SAMPLES, name), data / name)
    (data / "broken.jpg").write_bytes(open(os.path.join(SAMPLES, "cat.jpg"), "rb").read()[:500])  # truncated JPEG

    result = batch_predict(SHIPPED_MODEL, str(data / "*.jpg"), str(tmp_path / "out" / "pred"),
                           pipeline_args=["--direct_num_workers=2", "--direct_running_mode=multi_processing"])

    with open(os.path.join(SAMPLES, "labels.csv"), newline="") as handle:
        truth = {row["image"]: int(row["class_id"]) for row in csv.DictReader(handle)}
    top1 = {os.path.basename(r["image"]): r["predictions"][0]["class_id"] for r in read_records(result.prediction_files)}
    assert top1 == truth
    (error,) = list(read_records(result.error_files))
    assert os.path.basename(error["image"]) == "broken.jpg" and "corrupt or truncated" in error["error"]
    assert (result.images_predicted, result.images_failed) == (4, 1)


def test_a_folder_is_listed_as_every_command_lists_it(tmp_path):
    # No Beam needed: the launcher lists a local folder (images, recursively) and hands globs to Beam as given.
    from PIL import Image

    from tftrt_toolkit.jobs.batch_predict.options import split_data

    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.jpg", "sub/b.png"):
        Image.new("RGB", (8, 8)).save(folder / name)
    (folder / "notes.txt").write_text("shot list")
    (folder / "README.md").write_text("# photos")  # the folder's own description: not data, not skipped
    files = split_data([str(folder), "gs://bucket/more/*.jpg"])
    assert files.globs == ("gs://bucket/more/*.jpg",)
    assert files.folder_images == (str(folder / "a.jpg"), str(folder / "sub" / "b.png"))
    assert [os.path.basename(f.path) for f in files.skipped_files] == ["notes.txt"]
    with pytest.raises(DataError, match=r"strict data: skipped 1 file: 1 not an image \(.txt\)"):
        split_data([str(folder)], strict=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images in directory"):
        split_data([str(tmp_path / "empty")])


def test_a_folder_is_predicted_not_read_as_one_file(beam, tiny_saved_model, images, tmp_path):
    from tftrt_toolkit.jobs.batch_predict import batch_predict, read_records

    folder = os.path.dirname(images["glob"])
    result = batch_predict(str(tiny_saved_model), folder, str(tmp_path / "out" / "p"))
    assert sorted(r["image"] for r in read_records(result.prediction_files)) == sorted(images["good"])
    # The broken .jpg is an image by name: read, failed, dead-lettered, as with a glob.
    assert (result.images_predicted, result.images_failed) == (6, 1)
