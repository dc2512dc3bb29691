"""tftrt validate: compare an optimized model with its original; non-zero exit when they disagree.

  tftrt validate --original=SPEC --optimized=DIR [--data=synthetic|DIR|...] [--rtol=R --atol=A]
                 [--top_k=5] [--labels_csv=FILE] [--min_top1_agreement=S] [--output=FILE]

Runs both models on the same inputs and reports, per output, max/mean absolute and
relative error, the share of elements within tolerance (|opt - orig| <= atol + rtol*|orig|)
and the tolerance that would have been needed; top-1 and top-k agreement for classifiers;
each model's top-1/top-k accuracy, the drop and its 95% paired interval where the images are
labelled: --labels_csv (columns image,class_id), or a --data folder whose image names carry
ImageNet WordNet ids (n01440764_tench.JPEG, or n01440764/*.JPEG).
Defaults follow the precision recorded in the optimized model: fp32 atol=rtol=1e-4 on every
element and 100% top-1 agreement; bf16 5e-2 on 95% of elements and 90% agreement; int8
1e-1, 90%, 90% (see tftrt_toolkit.runtime.validate).
The JSON report goes to --output, or stdout (with the summary on stderr). Exit code 8 when
the optimized model is outside tolerance or agreement, or its signature differs.
Files of a --data folder that were not compared are listed under "skipped_files" and summed
up in one line on stderr; --strict_data makes them an error (exit 4).
"""

import sys

from tftrt_toolkit.cli import flags as cli_flags


def define_flags():
    model_flags = [name for name in cli_flags.define_model_flags() if name != "model"]
    return (cli_flags.define_validate_flags() + model_flags + cli_flags.define_data_flags()
            + cli_flags.define_output_flags("A file for the JSON report (default: stdout, with the summary on stderr).")
            + cli_flags.define_threading_flags())


def main() -> int:
    from tftrt_toolkit.report import results, writers
    from tftrt_toolkit.runtime.session import ModelRunner, configure_threads
    from tftrt_toolkit.runtime.validate import validate

    FLAGS = cli_flags.FLAGS
    original = cli_flags.require("original")
    optimized = cli_flags.require("optimized")
    output = FLAGS.output
    to_file = output not in (None, "", "-")
    if to_file:
        writers.check_writable([output], overwrite=FLAGS.overwrite)
    threads = cli_flags.threading_from_flags()
    configure_threads(*threads)  # before anything loads: TF fixes its thread pools at start-up
    load_options = cli_flags.model_load_options_from_flags()
    with ModelRunner(original, **load_options) as original_runner, \
            ModelRunner(optimized, signature_key=load_options["signature_key"]) as optimized_runner:
        report = validate(
            original_runner, optimized_runner,
            data=cli_flags.data_from_flags(default="synthetic"),
            rtol=FLAGS.rtol, atol=FLAGS.atol, top_k=FLAGS.top_k, labels_csv=FLAGS.labels_csv,
            min_top1_agreement=FLAGS.min_top1_agreement, min_within_tolerance=FLAGS.min_within_tolerance,
            batch_size=FLAGS.batch_size, samples=FLAGS.samples, threads=threads, strict_data=FLAGS.strict_data,
            **cli_flags.data_options_from_flags(),
        )
    # The report is written whether or not it passed: a failing CI job needs it most.
    if to_file:  # the file ValidationReport.save(path) writes from the Python API
        results.write_validation(report, output, overwrite=FLAGS.overwrite)
    else:
        sys.stdout.write(writers.json_text(report))
    summary = "\n".join(report.summary_lines()) + "\n"
    (sys.stdout if to_file else sys.stderr).write(summary)
    report.raise_if_failed()
    return 0
