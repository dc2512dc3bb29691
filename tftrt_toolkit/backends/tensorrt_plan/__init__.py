"""See the TensorRT conversion before you have a GPU: predict TF-TRT's engines from a frozen graph.

(Transitional: the module moves into this package before it is split by upstream file.)
"""

from tftrt_toolkit.backends.tensorrt_plan.plan import *  # noqa: F401,F403
from tftrt_toolkit.backends.tensorrt_plan.plan import CHECKS, PRECISIONS, plan_for_model  # noqa: F401
