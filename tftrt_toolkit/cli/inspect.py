"""tftrt inspect: a model's signatures, input/output names, shapes, dtypes, parameters and ops.

  tftrt inspect --model=SPEC [--json]
  tftrt inspect --model=SPEC --plan=tensorrt [--precision=fp16] [--minimum_segment_size=3]

--plan=tensorrt predicts, on any machine, how TF-TRT would split the frozen graph into
TensorRT engines, which ops break it up and why. A model carrying TF Serving warmup records
(assets.extra/tf_serving_warmup_requests) gets them counted and checked against its
signatures; a corrupt or mismatched file is an error (exit 3).
"""

import json

from tftrt_toolkit.cli import flags as cli_flags


def define_flags():
    names = cli_flags.define_model_flags() + cli_flags.define_format_flags()
    names.append(cli_flags.define("enum", "plan", None, "Predict a backend's conversion: tensorrt.",
                                   enum_values=["tensorrt"]))
    plan_settings = [n for n in cli_flags.define_tensorrt_flags() if n in ("minimum_segment_size", "use_dynamic_shape", "build_shapes")]
    return names + cli_flags.define_precision_flag() + plan_settings


def main() -> int:
    from tftrt_toolkit.models.inspection import describe, describe_lines
    from tftrt_toolkit.models.loader import load_model

    FLAGS = cli_flags.FLAGS
    with load_model(cli_flags.require("model"), weights=FLAGS.weights, signature_key=FLAGS.signature,
                    unsafe_deserialization=FLAGS.unsafe_deserialization,
                    custom_objects=FLAGS.custom_objects or None) as model:
        info = describe(model)
        lines = describe_lines(info)
        if info.get("precision_coverage"):
            from tftrt_toolkit.analysis.precision_coverage import PrecisionCoverage

            lines.insert(2, PrecisionCoverage.from_json(info["precision_coverage"]).describe())
        if not model.is_temporary_export:
            lines.append(_warmup_line(model.saved_model_dir, info))
        if FLAGS.plan == "tensorrt":
            from tftrt_toolkit.backends.tensorrt_plan import plan_for_model

            plan = plan_for_model(model, precision=FLAGS.precision, minimum_segment_size=FLAGS.minimum_segment_size,
                                  use_dynamic_shape=FLAGS.use_dynamic_shape, build_shapes=FLAGS.build_shapes)
            info["tensorrt_plan"] = plan.to_json()
            lines += ["", plan.render_text()]
    if FLAGS.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        print("\n".join(lines))
    return 0


def _warmup_line(saved_model_dir: str, info: dict) -> str:
    """How many TF Serving warmup records the model carries; ModelLoadError (one line) when they do not check out."""
    from tftrt_toolkit.serving.warmup import WARMUP_RELATIVE_PATH, read_warmup_file

    warmup = read_warmup_file(saved_model_dir)
    info["serving_warmup"] = None if warmup is None else warmup.to_json()
    return f"TF Serving warmup: none (no {WARMUP_RELATIVE_PATH})" if warmup is None else warmup.describe()
