"""Calibration data folders: the files calibration did not use are recorded, and strict_data refuses them before any work."""

import os

import numpy as np
import pytest
from PIL import Image

from tftrt_toolkit import ConversionConfig, convert
from tftrt_toolkit.artifacts import read_metadata
from tftrt_toolkit.backends.base import Conversion, ConversionBackend
from tftrt_toolkit.errors import DataError


class CalibratingBackend(ConversionBackend):
    """Reads every calibration batch, as TF-TRT's calibrate step does, then writes a placeholder model."""

    name = "cpu"

    def __init__(self):
        self.samples = 0

    def check_available(self, config, env):
        pass

    def convert(self, model, config, *, calibration_input_fn=None, build_input_fn=None):
        for batch in calibration_input_fn():
            self.samples += len(batch[0])

        def write(output_dir):
            open(os.path.join(output_dir, "saved_model.pb"), "w").close()

        return Conversion(backend="cpu", precision="int8", write=write)


@pytest.fixture
def calibration_folder(tmp_path):
    folder = tmp_path / "calibration"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8)).save(folder / f"p{i}.png")  # after the bad files in walk order: calibration reads 4 samples
    (folder / "cut.jpg").write_bytes(b"\xff\xd8\xff")
    (folder / "notes.csv").write_text("file,origin\n")
    return folder


CONFIG = ConversionConfig(backend="cpu", precision="int8", calibration_steps=2, batch_size=2, warmup_data="none")


def test_files_calibration_did_not_use_are_in_the_metadata(tiny_saved_model, calibration_folder, tmp_path):
    backend = CalibratingBackend()
    result = convert(str(tiny_saved_model), str(tmp_path / "out"), CONFIG, backend=backend,
                     calibration_data=str(calibration_folder), progress=False)
    assert backend.samples == 4
    skipped = read_metadata(result.path)["data"]["skipped_files"]
    assert [(os.path.basename(entry["path"]), entry["reason"]) for entry in skipped] == [
        ("cut.jpg", "unreadable"), ("notes.csv", "not an image")]


def test_strict_data_refuses_the_folder_before_converting(tiny_saved_model, calibration_folder, tmp_path):
    backend = CalibratingBackend()
    with pytest.raises(DataError, match=r"strict data: skipped 2 files: 1 not an image \(.csv\), 1 unreadable \(cut.jpg\)"):
        convert(str(tiny_saved_model), str(tmp_path / "out"), CONFIG, backend=backend,
                calibration_data=str(calibration_folder), strict_data=True, progress=False)
    assert backend.samples == 0 and not (tmp_path / "out").exists()
