"""tftrt convert: optimize a model and save it as a SavedModel.

  tftrt convert --model=SPEC --output=DIR [--backend=auto|tensorrt|cpu] [--precision=fp32|fp16|bf16|int8]

The output loads with plain `tf.saved_model.load` and keeps the input's signature name,
input/output names and dtypes. It is written atomically (a temporary directory beside it,
then a rename); an existing output is an error unless --overwrite; the input is never
modified. What was done is recorded in OUTPUT/assets.extra/tftrt_toolkit.json.
A Keras file with custom layers needs --custom_objects=module.path (or FILE.py) naming the
module that defines them; without it the error names the missing class. --strict_data
refuses a --calibration_data folder holding files that would be skipped.
"""

from tftrt_toolkit.cli import flags as cli_flags


def define_flags():
    return (cli_flags.define_model_flags()
            + cli_flags.define_output_flags("The SavedModel directory to write (with --version: the base of BASE/N).")
            + cli_flags.define_version_flag() + cli_flags.define_conversion_flags() + cli_flags.define_input_flags()
            + cli_flags.define_strict_data_flag())


def main() -> int:
    from tftrt_toolkit.pipeline import convert

    FLAGS = cli_flags.FLAGS
    model = cli_flags.require("model")
    output = cli_flags.require("output")
    config = cli_flags.conversion_config_from_flags()
    result = convert(
        model, output, config,
        overwrite=FLAGS.overwrite,
        version=FLAGS.version,
        weights=FLAGS.weights,
        calibration_data=FLAGS.calibration_data,
        unsafe_deserialization=FLAGS.unsafe_deserialization,
        custom_objects=FLAGS.custom_objects or None,
        strict_data=FLAGS.strict_data,
        **cli_flags.data_options_from_flags(),
        progress=True,  # a bar when stderr is a terminal; the step lines are logged (cli/main.py shows them)
    )
    summary = result.metadata.get("conversion_summary", {})
    print(f"{result.path}  backend={result.backend} precision={result.precision} "
          f"nodes={summary.get('nodes_frozen', '?')}→{summary.get('nodes_optimized', '?')}")
    if summary.get("precision_coverage"):
        from tftrt_toolkit.analysis.precision_coverage import PrecisionCoverage

        print(PrecisionCoverage.from_json(summary["precision_coverage"]).describe())
    return 0
