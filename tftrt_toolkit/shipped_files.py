"""Where the shipped default model and sample photos are: package data, found from this file.

They live inside the package (``tftrt_toolkit/shipped/``), so ``tftrt run`` finds them after
``pip install .`` as well as in a checkout; the checkout's ``saved_models/`` is a symlink to
the same directory, for the paths the README and configs use.
"""

import os

SHIPPED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shipped")
SHIPPED_MODEL = os.path.join(SHIPPED_DIR, "efficientnet_lite0")
SHIPPED_SAMPLES = os.path.join(SHIPPED_DIR, "samples")
SHIPPED_LABELS_CSV = os.path.join(SHIPPED_SAMPLES, "labels.csv")
# int8 calibration for the shipped model: crops of free photos (ImageNet's cannot ship); see its SOURCES.md.
SHIPPED_CALIBRATION = os.path.join(SHIPPED_DIR, "calibration")
