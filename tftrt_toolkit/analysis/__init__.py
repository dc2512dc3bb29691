"""What we learn about a graph without converting or running it; sits below ``backends``.

``tensorrt_plan/``: the TensorRT segment plan (``inspect --plan=tensorrt``), read from the frozen
graph both backends start from (``backends/frozen``, ``backends/graphdef.py``).
"""
