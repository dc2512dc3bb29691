"""See the TensorRT conversion before you have a GPU: predict TF-TRT's engines from a frozen graph.

``plan_tensorrt_segments(graph_def, precision=..., minimum_segment_size=...)`` reads the
frozen, grappler-optimized GraphDef that TF-TRT would see and returns a ``SegmentPlan``:
the op histogram, a supported/unsupported verdict with a reason for every node, the
predicted TRTEngineOp segments, the unsupported ops ranked by how much of the graph they
keep out of TensorRT, a verdict a person can act on, and hints (e.g. engines built at run
time). ``compare_with_conversion(plan, converted_graph_def)`` reads the engines a real
TF-TRT conversion produced and sets them beside the prediction.

The rules come from TensorFlow 2.17's TF-TRT source, shipped as data in
``analysis/tensorrt_plan/data/tftrt_supported_ops_tf2.17.json`` (see its ``source`` and ``derivation``).

Modeled, as in ``segment/segment.cc`` and ``convert/convert_nodes.cc``:
  - candidate selection in TF-TRT's order: nodes pinned to CPU, graph outputs (the
    segmenter's exclude list), implicit batch mode (rank >= 2 inputs with a batch
    dimension; this is what keeps int32 shape arithmetic out), then the converter's
    validation: registered op type, quantization ops only in int8, every input
    convertible to a TensorRT tensor or weights (dtype, known rank, no scalars in implicit
    batch, no empty dims; Identity chains followed to constants), the dtype attribute, which
    inputs must be constants, explicit-batch-only converters, and per-op attribute rules
    (padding, data_format, batch-axis manipulation, reshape/broadcast limits, ...);
  - the segmenter itself: union of supported nodes along data edges from the outputs
    towards the inputs, cycle avoidance, implicit-batch batch-size compatibility, removal
    of constants that also feed nodes outside, ``minimum_segment_size`` counted without
    Identity/Snapshot/StopGradient, and the TF_TRT_MAX_ALLOWED_ENGINES cap (default 20);
  - engine node counts as ``trt_convert``'s ``summary()`` counts them (segment nodes plus
    the outside constants copied into the engine's function).

Choices of this module (not TF-TRT rules): "compute nodes" are all nodes except constants,
identities, graph inputs and no-ops; graph outputs default to the nodes nothing reads from;
``input_shapes`` only feed the run-time build hint, because TF-TRT segments with the graph's
own shapes (build shapes reach it later, through ``converter.build()``); CPU placements are
ignored when every node carries one (a graph frozen on a CPU-only machine).

Not modeled (the prediction can differ from a real conversion there):
  - grappler's own shape inference: shapes here come from TensorFlow's shape functions
    when the graph is imported, with every unknown dimension treated alike (grappler can
    tell two unknown dimensions apart, which can keep ops with different symbolic batch
    sizes apart); TF-TRT re-runs grappler (layout on a GPU cluster may add Transposes);
  - the fp16 Cast rewrite, TF_TRT_OP_DENYLIST, TensorRT plugins, and rules of converters
    that need values only known while building (e.g. broadcast shapes of dynamic dims,
    einsum equations, NMS parameters, batched constants in BatchMatMul);
  - whether TensorRT then builds each engine: a segment can still fall back to TensorFlow
    at build time (out of memory, unsupported layer for a given shape);
  - conversion inside functions (TF-TRT only converts the main graph unless asked).

The package mirrors TF-TRT's sources file by file, so a TensorFlow version bump maps
module to module (each module's docstring names the upstream file):

  graph.py          reading the frozen graph TF-TRT sees (trt_convert.py's freezing and
                    grappler, shapes from TensorFlow's shape functions)
  op_rules.py       convert/convert_nodes.cc: TrtNodeValidator, ConvertToTensorOrWeights and
                    the op table (analysis/tensorrt_plan/data/tftrt_supported_ops_tf2.17.json)
  op_converters.py  the per-op Convert* rules of convert_nodes.cc and convert/ops/*.cc
  segmenter.py      segment/segment.cc and segment/union_find.cc
  plan.py           the plan: engines, breakers, verdict, hints, rendering; plan_for_model
  compare.py        a real conversion's engines (trt_convert.py summary()) beside the plan
"""

from tftrt_toolkit.analysis.tensorrt_plan.compare import (
    ActualEngine,
    ConversionComparison,
    EngineMatch,
    compare_with_conversion,
    engines_in_converted_graph,
)
from tftrt_toolkit.analysis.tensorrt_plan.graph import (
    CALL_OP_TYPES,
    NON_COMPUTE_OP_TYPES,
    REMAPPER_FUSED_OP_TYPES,
    UNFROZEN_OP_TYPES,
    Shape,
)
from tftrt_toolkit.analysis.tensorrt_plan.op_converters import CHECKS
from tftrt_toolkit.analysis.tensorrt_plan.op_table import OP_TABLE_FILE, PRECISIONS, OpSupportTable, load_op_table
from tftrt_toolkit.analysis.tensorrt_plan.plan import (
    NOT_A_BREAKER,
    Breaker,
    DroppedSegment,
    NodeVerdict,
    PredictedEngine,
    SegmentPlan,
    plan_for_model,
    plan_tensorrt_segments,
)

__all__ = [
    "ActualEngine", "Breaker", "ConversionComparison", "DroppedSegment", "EngineMatch", "NodeVerdict",
    "OpSupportTable", "PredictedEngine", "SegmentPlan", "compare_with_conversion", "engines_in_converted_graph",
    "load_op_table", "plan_for_model", "plan_tensorrt_segments",
]
