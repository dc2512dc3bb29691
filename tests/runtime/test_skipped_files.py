"""predict and validate say which files of an image folder they did not use, and refuse them when strict."""

import numpy as np
import pytest
from PIL import Image

from tftrt_toolkit.errors import DataError
from tftrt_toolkit.runtime.predict import predict
from tftrt_toolkit.runtime.validate import validate


@pytest.fixture
def folder_with_clutter(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.gif", "c.tif"):
        Image.fromarray(rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8)).save(folder / name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    (folder / "notes.txt").write_text("about these images")
    return folder


EXPECTED = [("broken.jpg", "unreadable"), ("notes.txt", "not an image")]


def _names(entries):
    return [(entry["path"].rsplit("/", 1)[1], entry["reason"]) for entry in entries]


def test_predict_lists_skipped_files(tiny_saved_model, folder_with_clutter):
    result = predict(str(tiny_saved_model), str(folder_with_clutter))
    assert len(result.records) == 3
    assert _names(result.skipped_files) == EXPECTED and _names(result.to_json()["skipped_files"]) == EXPECTED
    assert result.skipped_summary == "skipped 2 files: 1 not an image (.txt), 1 unreadable (broken.jpg)"


def test_validate_lists_skipped_files_and_strict_refuses_them(tiny_saved_model, folder_with_clutter):
    report = validate(str(tiny_saved_model), str(tiny_saved_model), data=str(folder_with_clutter), progress=False)
    assert report.passed and report.samples == 3
    assert _names(report.to_json()["skipped_files"]) == EXPECTED
    with pytest.raises(DataError, match=r"strict data: skipped 2 files: .*broken.jpg.*notes.txt"):
        validate(str(tiny_saved_model), str(tiny_saved_model), data=str(folder_with_clutter), progress=False,
                 strict_data=True)
