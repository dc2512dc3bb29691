"""A folder as users have them: PNG (gray, RGBA), animated GIF, TIFF, JPEG (CMYK, EXIF-rotated), a broken JPEG, a .txt."""

import json

import numpy as np
import pytest
from PIL import Image

SUMMARY = "skipped 2 files: 1 not an image (.txt), 1 unreadable (broken.jpg)"
IMAGES = ("cmyk.jpg", "gray.png", "palette.gif", "portrait.jpg", "rgba.png", "scan.tiff")


@pytest.fixture
def mixed_folder(tmp_path, photo):
    folder = tmp_path / "photos"
    folder.mkdir()
    picture = Image.fromarray(photo).resize((48, 32))
    picture.convert("L").save(folder / "gray.png")
    picture.convert("RGBA").save(folder / "rgba.png")
    picture.save(folder / "palette.gif", save_all=True, append_images=[picture.rotate(180)], duration=100)
    picture.save(folder / "scan.tiff")
    picture.convert("CMYK").save(folder / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    picture.save(folder / "portrait.jpg", exif=exif)
    good = (folder / "cmyk.jpg").read_bytes()
    (folder / "broken.jpg").write_bytes(good[: len(good) // 3])
    (folder / "notes.txt").write_text("shot list")
    return folder


@pytest.fixture
def photo():
    import skimage.data

    return skimage.data.chelsea()


def test_every_image_is_predicted_and_the_skipped_files_are_named(run_cli, tiny_saved_model, mixed_folder):
    result = run_cli("predict", f"--model={tiny_saved_model}", f"--data={mixed_folder}")
    data = json.loads(result.out)
    assert sorted(record["image"].rsplit("/", 1)[1] for record in data["results"]) == sorted(IMAGES)
    assert all(np.all(np.isfinite(record["outputs"]["probabilities"])) for record in data["results"])
    summary_lines = [line for line in result.err.splitlines() if "skipped" in line]
    assert summary_lines == [f"tftrt predict: {SUMMARY}"]
    assert [(entry["path"], entry["reason"]) for entry in data["skipped_files"]] == [
        (str(mixed_folder / "broken.jpg"), "unreadable"), (str(mixed_folder / "notes.txt"), "not an image")]
    notes = {record["image"].rsplit("/", 1)[1]: record.get("note") for record in data["results"]}
    assert notes["palette.gif"] == "animated GIF, 2 frames: the first frame used"
    assert notes["scan.tiff"] is None


def test_strict_data_fails_with_exit_4_listing_them_and_writes_nothing(run_cli, tiny_saved_model, mixed_folder, tmp_path):
    output = tmp_path / "predictions.json"
    result = run_cli("predict", f"--model={tiny_saved_model}", f"--data={mixed_folder}", "--strict_data",
                     f"--output={output}", expect_exit=4)
    error_lines = [line for line in result.err.splitlines() if line.startswith("tftrt predict: error:")]
    assert len(error_lines) == 1
    assert SUMMARY in error_lines[0]
    assert str(mixed_folder / "broken.jpg") in error_lines[0] and str(mixed_folder / "notes.txt") in error_lines[0]
    assert not output.exists()


def test_strict_data_passes_a_clean_folder(run_cli, tiny_saved_model, mixed_folder):
    (mixed_folder / "broken.jpg").unlink()
    (mixed_folder / "notes.txt").unlink()
    data = json.loads(run_cli("predict", f"--model={tiny_saved_model}", f"--data={mixed_folder}", "--strict_data").out)
    assert len(data["results"]) == len(IMAGES) and data["skipped_files"] == []


def test_validate_names_the_skipped_files_and_strict_data_refuses_them(run_cli, tiny_saved_model, mixed_folder):
    result = run_cli("validate", f"--original={tiny_saved_model}", f"--optimized={tiny_saved_model}", f"--data={mixed_folder}")
    report = json.loads(result.out)
    assert report["samples"] == len(IMAGES)
    assert [entry["reason"] for entry in report["skipped_files"]] == ["unreadable", "not an image"]
    assert [line for line in result.err.splitlines() if "skipped" in line] == [f"tftrt validate: {SUMMARY}"]
    strict = run_cli("validate", f"--original={tiny_saved_model}", f"--optimized={tiny_saved_model}",
                     f"--data={mixed_folder}", "--strict_data", expect_exit=4)
    assert SUMMARY in strict.err and "notes.txt" in strict.err


def test_run_names_the_skipped_files_and_strict_data_refuses_them_before_converting(run_cli, tiny_saved_model,
                                                                                      mixed_folder, tmp_path):
    strict = run_cli("run", f"--model={tiny_saved_model}", f"--data={mixed_folder}", "--precisions=fp32",
                     f"--output_dir={tmp_path / 'strict'}", "--strict_data", expect_exit=4)
    assert SUMMARY in strict.err and not (tmp_path / "strict").exists()
    run_cli("run", f"--model={tiny_saved_model}", f"--data={mixed_folder}", "--precisions=fp32",
            f"--output_dir={tmp_path / 'report'}", "--batch_sizes=1", "--duration=0.2")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [entry["reason"] for entry in report["skipped_files"]] == ["unreadable", "not an image"]
    assert any(SUMMARY in note for note in report["notes"])


def test_tune_strict_data_refuses_them_before_converting(run_cli, tiny_saved_model, mixed_folder, tmp_path):
    result = run_cli("tune", f"--model={tiny_saved_model}", f"--data={mixed_folder}", "--strict_data",
                     "--candidates=cpu-fp32", f"--output={tmp_path / 'tuned'}", expect_exit=4)
    error_lines = [line for line in result.err.splitlines() if line.startswith("tftrt tune: error:")]
    assert len(error_lines) == 1 and SUMMARY in error_lines[0]
    assert str(mixed_folder / "notes.txt") in error_lines[0]
    assert not (tmp_path / "tuned").exists() and not (tmp_path / "tuned.tune").exists()
