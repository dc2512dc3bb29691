"""Files an image folder holds that are not used: listed with their reasons, summed up in one line, or refused (strict)."""

import os

import pytest
from PIL import Image

from tftrt_toolkit.data.skipped import SkippedFile, skipped_summary
from tftrt_toolkit.data.sources import open_source
from tftrt_toolkit.errors import DataError


def test_summary_line_has_the_documented_form():
    skipped = [SkippedFile("d/a.txt", "not an image"), SkippedFile("d/b.json", "not an image"),
               SkippedFile("d/broken.jpg", "unreadable", "is a corrupt or truncated image")]
    assert skipped_summary(skipped) == "skipped 3 files: 2 not images (.txt, .json), 1 unreadable (broken.jpg)"


def test_summary_line_singulars_repeats_and_long_lists():
    assert skipped_summary([]) == ""
    assert skipped_summary([SkippedFile("x/README", "not an image")]) == "skipped 1 file: 1 not an image (README)"
    many = [SkippedFile(f"x/{i}.txt", "not an image") for i in range(3)] + [
        SkippedFile(f"x/bad{i}.jpg", "unreadable") for i in range(7)]
    assert skipped_summary(many) == ("skipped 10 files: 3 not images (.txt), "
                                     "7 unreadable (bad0.jpg, bad1.jpg, bad2.jpg, bad3.jpg, bad4.jpg and 2 more)")


@pytest.fixture
def cluttered_folder(tmp_path, photo):
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    small = Image.fromarray(photo).resize((40, 30))
    small.save(folder / "a.jpg")
    small.save(folder / "sub" / "b.png")
    (folder / ".DS_Store").write_bytes(b"\0\0")
    (folder / "sub" / "labels.json").write_text("{}")
    (folder / "sub" / "z_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    os.symlink(folder / "sub", folder / "linked", target_is_directory=True)
    return folder


def test_every_unused_file_is_listed_with_its_reason(cluttered_folder, image_signature, caplog):
    source = open_source(cluttered_folder, image_signature())
    used = [sample.source for sample in source.samples()]
    assert used == [str(cluttered_folder / "a.jpg"), str(cluttered_folder / "sub" / "b.png")]
    assert [(os.path.relpath(f.path, cluttered_folder), f.reason) for f in source.skipped_files] == [
        (".DS_Store", "hidden"), ("linked", "symlinked directory"),
        ("sub/labels.json", "not an image"), ("sub/z_broken.png", "unreadable")]
    assert source.skipped_summary() == ("skipped 4 files: 1 not an image (.json), 1 unreadable (z_broken.png), "
                                        "1 hidden (.DS_Store), 1 symlinked directory not followed (linked)")


def test_a_sample_limit_reports_what_it_saw(cluttered_folder, image_signature, caplog):
    source = open_source(cluttered_folder, image_signature())
    with caplog.at_level("WARNING", logger="tftrt_toolkit.data"):
        assert len(next(source.batches(1, limit=1))) == 1
    assert [f.reason for f in source.skipped_files] == ["hidden"]  # the walk stopped after a.jpg
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == ["skipped 1 file: 1 hidden (.DS_Store)"]


def test_strict_refuses_at_open_listing_every_file(cluttered_folder, image_signature):
    with pytest.raises(DataError) as raised:
        open_source(cluttered_folder, image_signature(), strict=True)
    message = str(raised.value)
    assert "\n" not in message and message.startswith("strict data: skipped 4 files:")
    for name in (".DS_Store", "linked", "labels.json", "z_broken.png"):
        assert name in message
    assert "is not a JPEG, PNG" in message  # why the broken file is unreadable


def test_strict_accepts_a_clean_folder_and_arrays(tmp_path, photo, image_signature):
    Image.fromarray(photo).save(tmp_path / "only.jpg")
    source = open_source(tmp_path, image_signature(), strict=True)
    assert len(list(source.samples())) == 1 and source.skipped_files == ()
    assert open_source("synthetic:2", image_signature(), strict=True).skipped_files == ()


def test_a_folders_own_description_is_neither_used_nor_skipped(tmp_path, photo, image_signature):
    # README/SOURCES text and the labels CSV belong with the images: no "skipped" noise, strict accepts them.
    Image.fromarray(photo).save(tmp_path / "cat.jpg")
    (tmp_path / "README.md").write_text("# my photos\n")
    (tmp_path / "SOURCES.md").write_text("from the camera\n")
    (tmp_path / "labels.csv").write_text("image,class_id\ncat.jpg,281\n")
    source = open_source(tmp_path, image_signature(), strict=True)
    assert [os.path.basename(sample.source) for sample in source.samples()] == ["cat.jpg"]
    assert source.skipped_files == () and source.skipped_summary() == ""


def test_other_text_and_csv_files_are_still_reported(tmp_path, photo, image_signature):
    Image.fromarray(photo).save(tmp_path / "cat.jpg")
    (tmp_path / "notes.md").write_text("not a description by name\n")
    (tmp_path / "scores.csv").write_text("image,score\ncat.jpg,0.5\n")  # not the labels format
    source = open_source(tmp_path, image_signature())
    list(source.samples())
    assert sorted(os.path.basename(f.path) for f in source.skipped_files) == ["notes.md", "scores.csv"]
    with pytest.raises(DataError, match="strict data: skipped 2 files"):
        open_source(tmp_path, image_signature(), strict=True)


@pytest.mark.parametrize("folder", ["samples", "calibration"])
def test_the_shipped_folders_have_nothing_to_skip(folder, image_signature):
    from tftrt_toolkit.shipped_files import SHIPPED_DIR

    source = open_source(os.path.join(SHIPPED_DIR, folder), image_signature(), strict=True)
    assert source.count() >= 4 and source.skipped_files == ()
