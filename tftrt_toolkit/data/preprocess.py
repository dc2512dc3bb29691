"""Pixel preprocessing modes with exactly the meaning of ``keras.applications``.

- ``caffe``: RGB -> BGR, then subtract the ImageNet mean per channel, no scaling
  (VGG16/VGG19, ResNet50/101/152).
- ``tf``: scale to [-1, 1] (x / 127.5 - 1) (MobileNet, MobileNetV2, InceptionV3, Xception, ...).
- ``torch``: scale to [0, 1], then normalize with the ImageNet mean/std (DenseNet).
- ``none``: raw 0..255 pixels as floats (models that normalize inside, e.g. EfficientNet).
- ``auto``: pick one of the above from a hint about the model (see ``resolve_preprocess_mode``).

The arithmetic repeats ``keras.src.applications.imagenet_utils._preprocess_numpy_input``
step by step in float32, so results match Keras bit for bit. No Keras import here.
"""

from __future__ import annotations

import logging
import re
from typing import Mapping, Optional, Tuple, Union

import numpy as np

from tftrt_toolkit.errors import DataError

logger = logging.getLogger(__name__)

PREPROCESS_MODES = ("auto", "caffe", "tf", "torch", "none")

# A keras:NAME spec, a recorded mode, or a model-info mapping (see resolve_preprocess_mode).
ModelHint = Union[None, str, Mapping[str, object]]

_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
_TORCH_STD_RGB = (0.229, 0.224, 0.225)

# keras.applications model names (lower case, '_' and '-' removed) -> the mode their
# module's preprocess_input applies. Checked against Keras 3.15 and tf_keras 2.17 sources;
# 'none' families return their input unchanged from preprocess_input because the model
# starts with its own Rescaling/Normalization layers (include_preprocessing=True).
_KERAS_APPLICATION_MODES = (
    (r"vgg(16|19)?", "caffe"),
    (r"resnet(50|101|152)?", "caffe"),
    (r"resnet(50|101|152)?v2", "tf"),
    (r"resnetrs\d*", "none"),
    (r"mobilenet(v2)?", "tf"),
    (r"mobilenetv3(small|large)?", "none"),
    (r"inceptionv3", "tf"),
    (r"inceptionresnetv2", "tf"),
    (r"xception", "tf"),
    (r"nasnet(mobile|large)?", "tf"),
    (r"densenet(121|169|201)?", "torch"),
    (r"efficientnet(b[0-7])?", "none"),
    (r"efficientnetv2(b[0-3]|s|m|l)?", "none"),
    (r"convnext(tiny|small|base|large|xlarge)?", "none"),
    (r"regnet([xy]\d{3})?", "none"),
)


def check_preprocess_mode(mode: str) -> str:
    """Return ``mode`` if it is one of ``PREPROCESS_MODES``; DataError naming the valid ones otherwise."""
    if mode not in PREPROCESS_MODES:
        raise DataError(f"unknown preprocess mode {mode!r}; use one of {', '.join(PREPROCESS_MODES)}")
    return mode


def preprocess_mode_for_keras_application(name: str) -> Optional[str]:
    """The preprocess mode of a ``keras.applications`` model, or None for other names.

    Accepts the class name ('ResNet50V2'), a model spec ('keras:ResNet50V2') or the
    module name ('resnet_v2'), in any case.
    """
    key = name.strip()
    for prefix in ("keras:", "keras.applications."):
        if key.lower().startswith(prefix):
            key = key[len(prefix):]
    key = re.sub(r"[_\-\s]", "", key.lower())
    for pattern, mode in _KERAS_APPLICATION_MODES:
        if re.fullmatch(pattern, key):
            return mode
    return None


def resolve_preprocess_mode(mode: str, *, model_hint: ModelHint = None) -> Tuple[str, str]:
    """Turn ``auto`` into a concrete mode; return (mode, why) for logs and metadata.

    ``model_hint`` is what is known about the model's convention, either a string (a
    ``keras:NAME`` spec or keras.applications name -> that family's mode; a concrete mode
    a model card or an earlier run recorded, e.g. 'none' for a model that normalizes
    inside) or a model-info mapping (``LoadedModel.model_info``) whose ``preprocess`` entry
    (model card, or toolkit metadata under ``tftrt_toolkit``) wins over its
    ``keras_application`` entry. Hints that say nothing (a path, a Hub handle) leave
    ``auto`` feeding raw 0..255 pixels. Explicit modes are returned as given.
    Raises DataError for an unknown mode, or an unknown mode recorded in the hint.
    """
    check_preprocess_mode(mode)
    if mode != "auto":
        return mode, "as requested"
    for hint in _hint_strings(model_hint):
        if hint in PREPROCESS_MODES and hint != "auto":
            return hint, "recorded for this model"
        family_mode = preprocess_mode_for_keras_application(hint)
        if family_mode is not None:
            return family_mode, f"keras.applications convention for {hint}"
    return "none", "no hint about the model's convention: raw 0..255 pixels (pass --preprocess=caffe|tf|torch if it expects normalized inputs)"


def recorded_preprocess(model_info: Optional[Mapping[str, object]]) -> Optional[str]:
    """The preprocess mode a converted model's metadata records (what its data got when it was made), or None."""
    toolkit = (model_info or {}).get("tftrt_toolkit")
    mode = toolkit.get("preprocess") if isinstance(toolkit, Mapping) else None
    return str(mode) if mode else None


def hint_of_pair(original: Optional[Mapping[str, object]], optimized: Optional[Mapping[str, object]]) -> ModelHint:
    """The hint for feeding an original and its converted model the same inputs: the converted model's
    recorded mode when it has one (chosen when it was converted), else the original's conventions."""
    return optimized if recorded_preprocess(optimized) else original


def _hint_strings(model_hint: ModelHint) -> Tuple[str, ...]:
    """The hint's candidate strings, most specific first: the mode the toolkit recorded when it
    converted the model (what its data got), then a model card's, then a keras.applications family."""
    if model_hint is None:
        return ()
    if isinstance(model_hint, str):
        return (model_hint.strip(),)
    toolkit = model_hint.get("tftrt_toolkit")
    recorded = [toolkit.get("preprocess") if isinstance(toolkit, Mapping) else None, model_hint.get("preprocess")]
    for value in recorded:
        if value and value not in PREPROCESS_MODES[1:]:
            raise DataError(
                f"the model's card records preprocess {value!r}, which is not one of {', '.join(PREPROCESS_MODES[1:])}; "
                "fix the model card or pass --preprocess explicitly"
            )
    return tuple(str(value).strip() for value in recorded + [model_hint.get("keras_application")] if value)


def preprocess_pixels(pixels: np.ndarray, mode: str, *, channels_first: bool = False) -> np.ndarray:
    """Apply a concrete preprocess mode to pixels (0..255), returning a new float32 array.

    ``pixels`` is one image or a batch, channels last (…, H, W, C) or, with
    ``channels_first``, (…, C, H, W). ``caffe`` and ``torch`` need 3 channels (RGB);
    ``tf`` and ``none`` take any. Raises DataError for 'auto' (resolve it first), an
    unknown mode, or a channel count the mode cannot handle.
    """
    check_preprocess_mode(mode)
    if mode == "auto":
        raise DataError("preprocess mode 'auto' must be resolved to caffe|tf|torch|none before use; call resolve_preprocess_mode")
    x = np.array(pixels, dtype=np.float32, copy=True)
    if mode == "none":
        return x
    if mode == "tf":
        x /= 127.5
        x -= 1.0
        return x
    channels_last = np.moveaxis(x, -3, -1) if channels_first else x  # a view: edits land in x
    if channels_last.shape[-1] != 3:
        raise DataError(
            f"preprocess {mode!r} needs 3-channel RGB images, got {channels_last.shape[-1]} channel(s); use --preprocess=tf or none"
        )
    if mode == "torch":
        channels_last /= 255.0
        mean, std = _TORCH_MEAN_RGB, _TORCH_STD_RGB
    else:
        channels_last = channels_last[..., ::-1]  # RGB -> BGR, as Keras does before the mean
        mean, std = _CAFFE_MEAN_BGR, None
    # Per channel with Python floats, in Keras' order, so float32 rounding matches exactly.
    for channel in range(3):
        channels_last[..., channel] -= mean[channel]
        if std is not None:
            channels_last[..., channel] /= std[channel]
    if channels_first:
        return np.ascontiguousarray(np.moveaxis(channels_last, -1, -3))
    return np.ascontiguousarray(channels_last)
