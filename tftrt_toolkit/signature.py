"""What a model takes and returns, discovered from its SavedModel signature.

``ModelSignature`` is the one description every other stage reads: data generators
build inputs from it, backends keep it, artifacts record it in metadata.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import numpy as np

Shape = Tuple[Optional[int], ...]


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One named input or output: its shape (None for unknown dims) and numpy dtype name."""

    name: str
    shape: Optional[Shape]  # None when even the rank is unknown
    dtype: str  # numpy dtype name, e.g. "float32", "int32", "uint8", "string"

    @property
    def np_dtype(self) -> np.dtype:
        if self.dtype == "string":
            return np.dtype(object)
        return np.dtype(self.dtype)

    @property
    def has_dynamic_dims(self) -> bool:
        return self.shape is None or any(d is None for d in self.shape)

    def to_json(self) -> dict:
        return {"name": self.name, "shape": None if self.shape is None else list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: dict) -> "TensorInfo":
        shape = data.get("shape")
        return cls(name=data["name"], shape=None if shape is None else tuple(shape), dtype=data["dtype"])


@dataclasses.dataclass(frozen=True)
class ModelSignature:
    """A signature: its key and its inputs/outputs, inputs in the order callers feed them."""

    key: str
    inputs: Tuple[TensorInfo, ...]
    outputs: Tuple[TensorInfo, ...]

    @property
    def input_names(self) -> Tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> Tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    def input(self, name: str) -> TensorInfo:
        for info in self.inputs:
            if info.name == name:
                return info
        raise KeyError(name)

    def to_json(self) -> dict:
        return {
            "key": self.key,
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
        }

    @classmethod
    def from_json(cls, data: dict) -> "ModelSignature":
        return cls(
            key=data["key"],
            inputs=tuple(TensorInfo.from_json(t) for t in data["inputs"]),
            outputs=tuple(TensorInfo.from_json(t) for t in data["outputs"]),
        )
