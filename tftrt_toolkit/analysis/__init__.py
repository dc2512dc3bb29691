"""What we learn about a graph without converting or running it; sits below ``backends``.

``tensorrt_plan/``: the TensorRT segment plan (the tensorrt backend reports it), read from the
frozen graph both backends start from (``backends/frozen``, ``backends/graphdef.py``).
``precision_coverage``: the share of a converted graph's multiply-adds in its target precision
(the cpu backend refuses too small a share).
"""
