"""Shared fixtures: tiny real models built on the fly (no network), and the gpu marker's skip."""

import hashlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The test process is a toolkit process: oneDNN on (where the user did not choose) before any
# fixture imports TensorFlow, as every tftrt command does. Tests of the oneDNN-off path run
# in subprocesses with TF_ENABLE_ONEDNN_OPTS=0.
from tftrt_toolkit import onednn  # noqa: E402

onednn.turn_on_before_tensorflow()

import numpy as np
import pytest


def _tensorrt_available() -> bool:
    # is_tensorrt_enabled() is the one probe that cannot abort the process.
    from tensorflow.python.compiler.tensorrt import trt_convert
    import tensorflow as tf

    return bool(trt_convert._pywrap_py_utils.is_tensorrt_enabled()) and bool(tf.config.list_physical_devices("GPU"))


def pytest_collection_modifyitems(config, items):
    if not any("gpu" in item.keywords for item in items):
        return
    if _tensorrt_available():
        return
    skip = pytest.mark.skip(reason="needs a GPU and TensorFlow built with TensorRT; this machine has neither")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def build_tiny_cnn(num_classes: int = 10, image_size: int = 32, seed: int = 0):
    """A few conv layers with BN and a softmax head: small, but the ops (and their order) real CNNs have."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(image_size, image_size, 3), name="images")
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)  # conv -> BN -> ReLU, as in ResNet/MobileNet
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="tiny_cnn")


@pytest.fixture(scope="session")
def tiny_keras_model():
    return build_tiny_cnn()


@pytest.fixture(scope="session")
def tiny_saved_model(tmp_path_factory, tiny_keras_model):
    """A SavedModel with serving_default: images float32 [None,32,32,3] -> probabilities [None,10]."""
    from tftrt_toolkit.models.keras_export import export_keras_model

    path = tmp_path_factory.mktemp("models") / "tiny_cnn"
    export_keras_model(tiny_keras_model, str(path))
    return path


def load_transformer_builder():
    """benchmarks/models/transformer.py (not a package: loaded by path), the one transformer builder."""
    import importlib.util
    import sys

    name = "benchmarks_models_transformer"
    if name not in sys.modules:  # registered: its dataclasses look their module up
        path = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "models", "transformer.py")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def tiny_transformer_saved_model(tmp_path_factory):
    """The tests' BERT-style model, saved with Keras 3's model.export: token_ids int32 [None,64] -> [None,2].

    One attention block, d=16, seq 64: 57% of its multiply-adds are attention's own two Einsums,
    which int8 leaves in fp32, so its int8 covers 43% (see benchmarks/models/transformer.py).
    """
    path = tmp_path_factory.mktemp("models") / "tiny_transformer"
    load_transformer_builder().export_transformer("tiny", str(path))
    return path


@pytest.fixture(scope="session")
def tiny_keras_file(tmp_path_factory, tiny_keras_model):
    path = tmp_path_factory.mktemp("models") / "tiny_cnn.keras"
    tiny_keras_model.save(str(path))
    return path


@pytest.fixture
def random_images():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, size=(4, 32, 32, 3)).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_other_weights(tiny_keras_model, tmp_path_factory):
    """A deliberately broken "optimized" model: tiny_saved_model's architecture and signature, other weights."""
    import keras

    from tftrt_toolkit.models.keras_export import export_keras_model

    broken = keras.models.clone_model(tiny_keras_model)
    rng = np.random.default_rng(1)
    # Perturb kernels only: BatchNorm statistics stay valid, so outputs are wrong but finite.
    broken.set_weights([w + rng.normal(0, 0.5, w.shape).astype(w.dtype) if w.ndim >= 2 else w
                        for w in tiny_keras_model.get_weights()])
    path = tmp_path_factory.mktemp("models") / "tiny_other_weights"
    export_keras_model(broken, str(path))
    return path


def _tree_hash(path) -> str:
    """One digest of every file name and byte under ``path``: proof a model was not touched."""
    digest = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            digest.update(os.path.relpath(full, path).encode())
            with open(full, "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()


@pytest.fixture
def tree_hash():
    return _tree_hash


# --------------------------------------------------------------------------- batch-predict (jobs and cli)

@pytest.fixture
def beam():
    return pytest.importorskip("apache_beam")


@pytest.fixture
def images(tmp_path):
    """Six small photos-to-be (PNG and JPEG, not the model's size) and one file that is not an image."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    good = []
    for index in range(6):
        path = folder / f"img{index}.{'png' if index % 2 else 'jpg'}"
        Image.fromarray(rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)).save(path)
        good.append(str(path))
    broken = folder / "broken.jpg"
    broken.write_bytes(b"this is not a JPEG")
    return {"glob": str(folder / "*"), "good": good, "broken": str(broken)}


@pytest.fixture
def labels_file(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("\n".join(f"class {index}" for index in range(10)) + "\n")
    return str(path)
