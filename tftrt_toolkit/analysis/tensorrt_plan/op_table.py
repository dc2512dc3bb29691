"""TF-TRT's op table: the op types TF 2.17 registers a converter for, with their dtypes, precisions,
input roles and the named checks of ``op_converters.py``, shipped as data
(``data/tftrt_supported_ops_tf2.17.json``, mirrors ``convert/op_converter_registry.cc``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from importlib import resources
from typing import Any, Mapping, Optional

OP_TABLE_FILE = "tftrt_supported_ops_tf2.17.json"
PRECISIONS = ("fp32", "fp16", "int8")


@dataclasses.dataclass(frozen=True)
class OpSupportTable:
    """TF-TRT's supported op types and their rules for one TensorFlow version, with provenance."""

    tensorflow_version: str
    tensorflow_release: str
    assumed_tensorrt_version: str
    source: Mapping[str, Any]
    segmenter: Mapping[str, Any]
    ops: Mapping[str, Mapping[str, Any]]

    def rule(self, op_type: str) -> Optional[Mapping[str, Any]]:
        """The op type's converter rule, None when TF-TRT registers no converter for it."""
        return self.ops.get(op_type)


@functools.lru_cache(maxsize=None)
def load_op_table(file_name: str = OP_TABLE_FILE) -> OpSupportTable:
    """The shipped TF-TRT op table (read once per process)."""
    text = resources.files("tftrt_toolkit.analysis.tensorrt_plan").joinpath("data", file_name).read_text(encoding="utf-8")
    data = json.loads(text)
    return OpSupportTable(
        tensorflow_version=data["tensorflow_version"],
        tensorflow_release=data["tensorflow_release"],
        assumed_tensorrt_version=data["assumed_tensorrt_version"],
        source=data["source"],
        segmenter=data["segmenter"],
        ops=data["ops"],
    )
