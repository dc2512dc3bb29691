"""The frozen graph both backends and the TensorRT segment plan start from.

``freeze``: a SavedModel signature with its variables as constants, large weights held aside
(``held_weights``); ``grappler``: the stages TF-TRT runs before its TensorRT pass, each
returning a new ``FrozenSignature``. Imports nothing from ``backends.cpu`` or
``backends.tensorrt`` (tests/test_architecture.py).
"""
