"""INT8 post-training quantization for the cpu backend: oneDNN's fused INT8 kernels in stock TensorFlow.

One module per step (``recipe.py`` runs them in order): the frozen graph, cleaned by grappler
but *not* fused (the quantizer matches plain ``Conv2D → BiasAdd → Relu``, not
``_FusedConv2D``) → our folds → Intel Neural Compressor (``quantize``) → the int16 overflow
guard (``overflow_guard``) → residual adds into the int8 convs (``residual_sums``) → bias
correction (``bias_correction``) → a check against fp32 (``fp32_check``). What was tried and
measured to choose them: benchmarks/int8_cpu_notes.md.

The result is a plain GraphDef: the saved model needs only ``tf.saved_model.load`` with
TensorFlow's oneDNN build (the default on x86 Linux), not this toolkit and not INC.
"""

from tftrt_toolkit.backends.cpu.int8.quantize import INSTALL_HINT, MIN_CALIBRATION_SAMPLES, check_available
from tftrt_toolkit.backends.cpu.int8.recipe import METHOD, fold_for_quantizing, quantize

__all__ = ["INSTALL_HINT", "METHOD", "MIN_CALIBRATION_SAMPLES", "check_available", "fold_for_quantizing", "quantize"]
