"""Moved to ``tftrt_toolkit.signature`` (a core module, so data/ and models/ both read it without importing each other).

Kept so imports written against the old place keep working until the next release.
"""

from tftrt_toolkit.signature import Shape, TensorInfo, ModelSignature  # noqa: F401
