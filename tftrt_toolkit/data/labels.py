"""Ground truth for images: which class each labelled image shows.

Two ways to say it, one answer (``open_labels``):

- ``labels_csv``: a CSV with columns ``image,class_id``. ``image`` is a file name or a path
  as the data lists it; ``class_id`` is the class index (0..999 for ImageNet, the model's own
  index otherwise) or an ImageNet WordNet id (``n01440764``).
- an image folder whose names carry ImageNet WordNet ids: a file name starting with one
  (``n01440764_tench.JPEG``, the ImageNet sample-image convention), a folder named by one
  (ImageNet's ``train/n01440764/*.JPEG`` or a sorted ``val/n01440764/*.JPEG``), or ImageNet's
  own validation file names (``ILSVRC2012_val_00000001.JPEG``, labelled from the shipped table).

A WordNet id's class index is its position in the sorted list of the 1000 ImageNet-1k ids
(``data.imagenet_labels.imagenet_wordnet_ids``), the order of Keras, TF-Slim and PyTorch
ImageNet classifiers. Class ids here are always those 1000-class ids; scoring a 1001-class
model (background at 0) shifts its outputs, not the labels (``runtime.accuracy``).

Every row or file name that names no class is a ``DataError`` naming it, so a typo never
silently becomes an unlabelled (skipped) image.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import os
import re
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional

from tftrt_toolkit.data.images import LABELS_CSV_COLUMNS, is_image_file, iter_image_files
from tftrt_toolkit.errors import ConfigError, DataError

# A WordNet noun id: "n" and 8 digits, alone or followed by a separator ("n01440764_tench.JPEG").
_WORDNET_ID = re.compile(r"^(n\d{8})(?=$|[_.\- ])")
# ImageNet's validation (and test) file names carry no class; a shipped table gives it.
_IMAGENET_VAL_NAME = re.compile(r"^ILSVRC2012_val_\d{8}\.JPEG$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class ImageLabels:
    """The class id of each labelled image, keyed by path or file name, and where they came from."""

    class_ids: Mapping[str, int]
    origin: str  # for reports: "labels CSV FILE" or "WordNet ids in the file names under DIR"
    labels_csv: Optional[str] = None
    from_names: bool = False  # the class is in each image's own name, wherever the image is listed from

    def class_of(self, source: str) -> Optional[int]:
        """The class id of the image at ``source`` (matched by path as listed, then by file name); None if unlabelled."""
        class_id = self.class_ids.get(source)
        if class_id is None:
            class_id = self.class_ids.get(os.path.basename(source))
        if class_id is None and self.from_names:
            class_id = _class_id_in_name(Path(source))
        return class_id

    def __len__(self) -> int:
        return len(self.class_ids)


def open_labels(data, labels_csv: Optional[str] = None) -> Optional[ImageLabels]:
    """The ground truth for ``data``: from ``labels_csv`` when given, else from WordNet ids in an image folder's names.

    ``data`` may be a folder or a list of image files and folders. Returns None when there is
    none (no CSV, and ``data``'s images do not carry WordNet ids in their names). Raises DataError for an unreadable CSV, a row or a file name that names no
    class, or a folder where some images carry a WordNet id and others do not.
    """
    if labels_csv:
        return ImageLabels(read_labels_csv(labels_csv), origin=f"labels CSV {labels_csv}", labels_csv=labels_csv)
    if isinstance(data, (str, os.PathLike)) and os.path.isdir(data):
        return labels_from_names(data)
    if isinstance(data, (list, tuple)) and data:
        # Image files and folders listed one by one (e.g. one split of a labelled folder).
        files = [path for item in data
                 for path in (iter_image_files(item) if os.path.isdir(item) else [Path(item)])]
        return _labels_from_files(files, "the listed images")
    return None


def read_labels_csv(path: str) -> Dict[str, int]:
    """{image: class_id} from a CSV with columns image,class_id (more columns are ignored).

    ``class_id`` is a whole number >= 0 or an ImageNet WordNet id. Raises DataError naming
    the file and line for anything else, an unreadable file, missing columns or no rows.
    """
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not set(LABELS_CSV_COLUMNS) <= set(reader.fieldnames):
                raise DataError(f"labels CSV {path!r} needs columns image,class_id; it has {', '.join(reader.fieldnames or []) or 'none'}")
            truth = {}
            for line, row in enumerate(reader, start=2):
                image = (row.get("image") or "").strip()
                if not image:
                    raise DataError(f"labels CSV {path!r} line {line}: the image column is empty; give a file name or path")
                truth[image] = _csv_class_id(row.get("class_id"), f"labels CSV {path!r} line {line}")
    except OSError as error:
        raise DataError(f"labels CSV {path!r} cannot be read ({error.strerror or error})") from error
    except UnicodeDecodeError:
        raise DataError(f"labels CSV {path!r} is not UTF-8 text; save it as a UTF-8 CSV with columns image,class_id") from None
    if not truth:
        raise DataError(f"labels CSV {path!r} has no rows")
    return truth


def _csv_class_id(value: Optional[str], where: str) -> int:
    text = (value or "").strip()
    if _WORDNET_ID.match(text) and len(text) == 9:
        return class_id_of_wordnet_id(text, where)
    try:
        class_id = int(text)
    except ValueError:
        raise DataError(f"{where}: class_id {value!r} is neither a class index (0, 1, ...) nor an ImageNet "
                        "WordNet id (n01440764); fix that row") from None
    if class_id < 0:
        raise DataError(f"{where}: class_id {class_id} is negative; class indices start at 0")
    return class_id


def class_id_of_wordnet_id(wordnet_id: str, where: str) -> int:
    """The ImageNet-1k class id (0..999) of ``wordnet_id``; DataError (naming ``where``) if it is not one of the 1000."""
    index = _wordnet_index()
    if wordnet_id not in index:
        raise DataError(f"{where}: WordNet id {wordnet_id} is not one of the 1000 ImageNet-1k classes; "
                        "fix the name, or give --labels_csv with class ids")
    return index[wordnet_id]


def wordnet_id_in_name(path) -> Optional[str]:
    """The WordNet id a file's name starts with, else the one its folder is named by; None when neither carries one."""
    path = Path(path)
    for name in (path.name, path.parent.name):
        found = _WORDNET_ID.match(name)
        if found:
            return found.group(1)
    return None


def labels_from_names(directory) -> Optional[ImageLabels]:
    """Labels read from the names of the images under ``directory``; None when no image's name carries a class.

    Raises DataError when some images carry a WordNet id (or an ImageNet validation name) and
    others do not, or when a name carries a WordNet id outside the 1000 ImageNet classes.
    """
    return _labels_from_files(list(iter_image_files(directory)), str(directory))


def _labels_from_files(files: Iterable[Path], where: str) -> Optional[ImageLabels]:
    class_ids: Dict[str, int] = {}
    unlabelled = []
    for path in files:
        if not is_image_file(path):
            continue
        class_id = _class_id_in_name(path)
        if class_id is None:
            unlabelled.append(path)
        else:
            class_ids[str(path)] = class_id
    if not class_ids:
        return None
    if unlabelled:
        raise DataError(
            f"{len(unlabelled)} of {len(unlabelled) + len(class_ids)} images under {where} carry no ImageNet WordNet id "
            f"in their name while the others do (first: {unlabelled[0]}); name them like n01440764_tench.JPEG or "
            "n01440764/x.JPEG, or give --labels_csv"
        )
    return ImageLabels(class_ids, origin=f"WordNet ids in the image names under {where}", from_names=True)


def _class_id_in_name(path: Path) -> Optional[int]:
    wordnet_id = wordnet_id_in_name(path)
    if wordnet_id is not None:
        return class_id_of_wordnet_id(wordnet_id, f"image {path}")
    if _IMAGENET_VAL_NAME.match(path.name):
        from tftrt_toolkit.data.imagenet_labels import imagenet_validation_class_id

        class_id = imagenet_validation_class_id(path.name)
        if class_id is None:
            raise DataError(f"image {path}: {path.name} is not in ImageNet's validation label table; "
                            "rename it or give --labels_csv")
        return int(class_id)
    return None


@functools.lru_cache(maxsize=1)
def _wordnet_index() -> Dict[str, int]:
    from tftrt_toolkit.data.imagenet_labels import imagenet_wordnet_ids

    try:
        return {wordnet_id: class_id for class_id, wordnet_id in enumerate(imagenet_wordnet_ids())}
    except ConfigError as error:
        # Reading WordNet-named data needs the class table; say so as a data problem.
        raise DataError(str(error)) from error
