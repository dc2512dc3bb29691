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


def flag_groups():
    return [cli_flags.ModelFlags(), cli_flags.JsonFlag(), cli_flags.TensorRTPlanFlags()]


def main(flags) -> int:
    from tftrt_toolkit.models.inspection import describe, describe_lines
    from tftrt_toolkit.models.loader import load_model

    model, plan = flags[cli_flags.ModelFlags], flags[cli_flags.TensorRTPlanFlags]
    with load_model(model.spec, **model.load_options) as loaded:
        info = describe(loaded)
        lines = describe_lines(info)
        if info.get("precision_coverage"):
            from tftrt_toolkit.backends.precision_coverage import PrecisionCoverage

            lines.insert(2, PrecisionCoverage.from_json(info["precision_coverage"]).describe())
        if not loaded.is_temporary_export:
            lines.append(_warmup_line(loaded.saved_model_dir, info))
        if plan.plan == "tensorrt":
            from tftrt_toolkit.analysis.tensorrt_plan import plan_for_model

            predicted = plan_for_model(loaded, **plan.settings)
            info["tensorrt_plan"] = predicted.to_json()
            lines += ["", predicted.render_text()]
    if flags[cli_flags.JsonFlag].json:
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
