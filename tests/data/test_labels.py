"""Labelled images: WordNet ids in file and folder names, labels CSVs, and a clear line for anything that names no class."""

import numpy as np
import pytest
from PIL import Image

from tftrt_toolkit.data.labels import labels_from_names, open_labels, read_labels_csv, wordnet_id_in_name
from tftrt_toolkit.errors import DataError

TENCH, GOLDFISH, TOILET_TISSUE = "n01440764", "n01443537", "n15075141"  # classes 0, 1 and 999


def _image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    return path


@pytest.mark.parametrize("path,expected", [
    ("photos/n01440764_tench.JPEG", TENCH),
    ("photos/n01440764.jpg", TENCH),
    ("val/n01443537/ILSVRC2012_val_00000293.JPEG", GOLDFISH),
    ("val/n01443537/n01440764_x.png", TENCH),  # the file's own name wins over its folder's
    ("photos/cat.jpg", None),
    ("photos/n0144076_short.jpg", None),
    ("photos/n014407640_long.jpg", None),
    ("photos/xn01440764.jpg", None),
])
def test_wordnet_id_in_file_or_folder_name(path, expected):
    assert wordnet_id_in_name(path) == expected


def test_sample_image_names_map_to_sorted_wordnet_positions(tmp_path):
    for name in (f"{TENCH}_tench.JPEG", f"{GOLDFISH}_goldfish.JPEG", f"{TOILET_TISSUE}_toilet_tissue.JPEG"):
        _image(tmp_path / name)
    labels = labels_from_names(tmp_path)
    assert len(labels) == 3
    assert labels.class_of(str(tmp_path / f"{TENCH}_tench.JPEG")) == 0
    assert labels.class_of(f"{GOLDFISH}_goldfish.JPEG") == 1  # by file name too
    assert labels.class_of(str(tmp_path / f"{TOILET_TISSUE}_toilet_tissue.JPEG")) == 999
    assert labels.class_of("other.jpg") is None
    assert str(tmp_path) in labels.origin


def test_imagenet_folder_layout_and_validation_file_names(tmp_path):
    _image(tmp_path / "train" / GOLDFISH / "a.JPEG")
    _image(tmp_path / "val_flat" / "ILSVRC2012_val_00000001.JPEG")  # ImageNet's table: class 65 (sea snake)
    assert labels_from_names(tmp_path / "train").class_of(str(tmp_path / "train" / GOLDFISH / "a.JPEG")) == 1
    assert labels_from_names(tmp_path / "val_flat").class_of("ILSVRC2012_val_00000001.JPEG") == 65


def test_a_folder_without_wordnet_names_is_unlabelled(tmp_path):
    _image(tmp_path / "cat.jpg")
    assert labels_from_names(tmp_path) is None
    assert open_labels(str(tmp_path)) is None
    assert open_labels("synthetic") is None


def test_a_wordnet_id_outside_imagenet_is_one_clear_line(tmp_path):
    _image(tmp_path / f"{TENCH}_tench.JPEG")
    _image(tmp_path / "n99999999_unknown.JPEG")
    with pytest.raises(DataError, match=r"n99999999_unknown.JPEG: WordNet id n99999999 is not one of the 1000 ImageNet-1k") as raised:
        labels_from_names(tmp_path)
    assert "\n" not in str(raised.value)


def test_a_folder_with_some_unlabelled_images_is_refused(tmp_path):
    _image(tmp_path / f"{TENCH}_tench.JPEG")
    _image(tmp_path / "holiday.jpg")
    with pytest.raises(DataError, match=r"1 of 2 images .* carry no ImageNet WordNet id .*holiday.jpg"):
        labels_from_names(tmp_path)


def test_labels_csv_takes_class_indices_and_wordnet_ids(tmp_path):
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text(f"image,class_id,note\ncat.jpg,285,tabby\nfish.jpg,{GOLDFISH},\n")
    assert read_labels_csv(str(csv_file)) == {"cat.jpg": 285, "fish.jpg": 1}
    _image(tmp_path / f"{TENCH}_x.jpg")
    labels = open_labels(str(tmp_path), str(csv_file))  # the CSV wins over names
    assert labels.labels_csv == str(csv_file) and labels.class_of("fish.jpg") == 1 and labels.class_of(f"{TENCH}_x.jpg") is None


@pytest.mark.parametrize("value,message", [
    ("cat", r"line 3: class_id 'cat' is neither a class index"),
    ("-1", r"line 3: class_id -1 is negative"),
    ("n99999999", r"line 3: WordNet id n99999999 is not one of the 1000"),
    ("", r"line 3: class_id '' is neither"),
])
def test_labels_csv_row_naming_no_class_is_one_line(tmp_path, value, message):
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text(f"image,class_id\ncat.jpg,285\ndog.jpg,{value}\n")
    with pytest.raises(DataError, match=message) as raised:
        read_labels_csv(str(csv_file))
    assert "\n" not in str(raised.value)


def test_a_list_of_image_files_is_labelled_by_their_names(tmp_path):
    files = [_image(tmp_path / f"{TENCH}_a.JPEG"), _image(tmp_path / f"{GOLDFISH}_b.JPEG")]
    labels = open_labels([str(f) for f in files])
    assert len(labels) == 2 and labels.class_of(str(files[1])) == 1
    assert open_labels([str(_image(tmp_path / "plain.jpg"))]) is None
