"""The cpu backend: freeze, grappler stages, our folds, bf16, int8 (``int8/``), a streamed save.

Imports nothing from ``backends.tensorrt`` (tests/test_architecture.py).
"""
