"""tftrt convert: optimize a model and save it as a SavedModel.

  tftrt convert --model=SPEC --output=DIR [--backend=auto|tensorrt|cpu] [--precision=fp32|fp16|bf16|int8]

The output loads with plain `tf.saved_model.load` and keeps the input's signature name,
input/output names and dtypes. It is written atomically (a temporary directory beside it,
then a rename); an existing output is an error unless --overwrite; the input is never
modified. What was done is recorded in OUTPUT/assets.extra/tftrt_toolkit.json.
A Keras file with custom layers needs --custom_objects=module.path (or FILE.py) naming the
module that defines them; without it the error names the missing class. --strict_data
refuses a --calibration_data folder holding files that would be skipped. --preprocess is how
calibration images become inputs, and is recorded in the metadata: predict, validate,
benchmark, batch-predict and run on the output default to it.
"""

from tftrt_toolkit.cli import flags as cli_flags


def flag_groups():
    return [
        cli_flags.ModelFlags(),
        cli_flags.OutputFlags("The SavedModel directory to write (with --version: the base of BASE/N).", required=True,
                              version=True),
        cli_flags.ConversionFlags(),
        cli_flags.DataFlags(source_flag=False),  # the images are --calibration_data's
    ]


def main(flags) -> int:
    from tftrt_toolkit.pipeline import convert

    model, output = flags[cli_flags.ModelFlags], flags[cli_flags.OutputFlags]
    conversion, data = flags[cli_flags.ConversionFlags], flags[cli_flags.DataFlags]
    result = convert(
        model.spec, output.path, conversion.config,  # the signature key is in the config
        overwrite=output.overwrite, version=output.serving_version, **model.file_options,
        calibration_data=conversion.calibration_data, strict_data=data.strict, **data.options,
        progress=True,  # a bar when stderr is a terminal; the step lines are logged (cli/main.py shows them)
    )
    summary = result.metadata.get("conversion_summary", {})
    print(f"{result.path}  backend={result.backend} precision={result.precision} "
          f"nodes={summary.get('nodes_frozen', '?')}→{summary.get('nodes_optimized', '?')}")
    if summary.get("precision_coverage"):
        from tftrt_toolkit.backends.precision_coverage import PrecisionCoverage

        print(PrecisionCoverage.from_json(summary["precision_coverage"]).describe())
    branches = summary.get("token_branches")
    if branches:
        threads = branches.get("serving_threads")
        print(f"token branches: {branches['branches']}; serve with TF threads intra_op={threads['intra_op_threads']} "
              f"inter_op={threads['inter_op_threads']} (recorded in the model)" if threads else
              f"token branches: 1, not {branches['asked']}: {branches.get('why_not')}")
    return 0
