"""What we predict without converting: the TensorRT segment plan (``tensorrt_plan/``).

Sits below ``backends`` (the tensorrt backend reports the plan) and reads the frozen graph
both backends start from (``backends/frozen``, ``backends/graphdef.py``).
"""
