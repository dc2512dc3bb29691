"""Model specs: the strings users pass as ``--model`` and what kind of model each names.

  PATH                 a SavedModel directory (TF2 save, Keras 3 export, tf_keras save_format="tf")
  PATH.keras | .h5     a Keras model file
  keras:NAME           a keras.applications model, e.g. keras:ResNet50 (with --weights)
  hub:HANDLE | URL     a TF-Hub handle (https://tfhub.dev/..., https://www.kaggle.com/models/...) or local Hub dir
"""

from __future__ import annotations

import dataclasses
import enum
import os
from typing import Optional

from tftrt_toolkit.errors import ModelLoadError

KERAS_FILE_SUFFIXES = (".keras", ".h5", ".hdf5")


class ModelKind(str, enum.Enum):
    SAVED_MODEL = "saved_model"
    KERAS_FILE = "keras_file"
    KERAS_APPLICATION = "keras_application"
    HUB = "hub"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A parsed ``--model`` value: its kind, the path/name/handle, and keras weights if any."""

    kind: ModelKind
    location: str  # a path for files/dirs, a name for keras apps, a handle for hub
    weights: Optional[str] = None  # keras apps only: "imagenet", None, or a weights file path

    @property
    def text(self) -> str:
        """The spec as a user would write it again."""
        prefix = {ModelKind.KERAS_APPLICATION: "keras:", ModelKind.HUB: "hub:"}.get(self.kind, "")
        if self.kind is ModelKind.HUB and self.location.startswith(("http://", "https://")):
            prefix = ""
        return prefix + self.location

    def to_json(self) -> dict:
        return {"kind": self.kind.value, "location": self.location, "weights": self.weights, "text": self.text}


def _normalise_weights(weights: Optional[str]) -> Optional[str]:
    if weights is None or str(weights).lower() in ("", "none", "null", "random"):
        return None
    if str(weights).lower() == "imagenet":
        return "imagenet"
    return os.path.abspath(os.path.expanduser(str(weights)))


def parse_model_spec(text: str, weights: Optional[str] = "imagenet") -> ModelSpec:
    """Turn a ``--model`` string into a ModelSpec; ModelLoadError when it names nothing usable.

    ``weights`` applies to ``keras:NAME`` only ("imagenet", "none", or a file path).
    Paths are checked for existence here so the error names the spec as the user typed it.
    """
    if isinstance(text, os.PathLike):  # pathlib.Path, an OptimizedModel, ...
        text = os.fspath(text)
    if not text or not str(text).strip():
        raise ModelLoadError("no model given; pass --model=PATH, --model=keras:NAME or --model=hub:HANDLE.")
    text = str(text).strip()
    if text.lower().startswith("keras:"):
        name = text.split(":", 1)[1].strip()
        if not name:
            raise ModelLoadError("keras: needs a model name, e.g. --model=keras:ResNet50.")
        return ModelSpec(ModelKind.KERAS_APPLICATION, name, _normalise_weights(weights))
    if text.lower().startswith("hub:"):
        handle = text.split(":", 1)[1].strip()
        if not handle:
            raise ModelLoadError("hub: needs a handle or a local directory, e.g. --model=hub:https://tfhub.dev/...")
        if not handle.startswith(("http://", "https://", "gs://")):
            handle = os.path.abspath(os.path.expanduser(handle))
        return ModelSpec(ModelKind.HUB, handle)
    if text.startswith(("http://", "https://")):
        return ModelSpec(ModelKind.HUB, text)

    path = os.path.abspath(os.path.expanduser(text))
    if not os.path.exists(path):
        raise ModelLoadError(f"model path {text!r} does not exist; check the path (or use keras:NAME / hub:HANDLE).")
    if os.path.isfile(path):
        if path.lower().endswith(KERAS_FILE_SUFFIXES):
            return ModelSpec(ModelKind.KERAS_FILE, path)
        if os.path.basename(path) in ("saved_model.pb", "saved_model.pbtxt"):
            raise ModelLoadError(
                f"{text!r} is the SavedModel's graph file; pass its directory instead: --model={os.path.dirname(text) or '.'}"
            )
        raise ModelLoadError(
            f"{text!r} is a file, but a model must be a SavedModel directory or a .keras/.h5 file."
        )
    if os.path.exists(os.path.join(path, "tfhub_module.pb")):
        return ModelSpec(ModelKind.HUB, path)
    return ModelSpec(ModelKind.SAVED_MODEL, path)
