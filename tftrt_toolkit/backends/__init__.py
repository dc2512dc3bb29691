"""Conversion backends behind one interface (``base``, chosen by ``select``): ``tensorrt/`` (TF-TRT)
and ``cpu/`` (oneDNN graph pipeline), which never import each other; below both, ``frozen/``,
``graphdef.py`` and ``weights_size.py``, which the TensorRT segment plan (``analysis/``) reads too."""
