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


class ValidateFlags(cli_flags.FlagGroup):
    """validate's own: the two models, the tolerances and agreement they must meet, how many samples, in what batches."""

    def add(self, flags):
        flags.define("string", "original", None, "The original model (any --model form).")
        flags.define("string", "optimized", None, "The optimized model to check (a SavedModel dir, e.g. tftrt convert's output).")
        cli_flags.define_top_k(flags)
        flags.define("integer", "batch_size", 8, "Samples per call of each model.")
        flags.define("float", "rtol", None, "Relative tolerance per element (default by precision: fp32 1e-4, bf16 5e-2, ...).")
        flags.define("float", "atol", None, "Absolute tolerance per element (default by precision: fp32 1e-4, bf16 5e-2, ...).")
        flags.define("float", "min_within_tolerance", None,
                     "Share of output elements that must be within tolerance (default: 1.0 for fp32 or explicit tolerances).")
        flags.define("float", "min_top1_agreement", None, "Share of samples whose top-1 class must match (default by precision).")
        flags.define("integer", "samples", None, "Compare on at most this many samples (default: all; 32 for synthetic data).")

    def parse(self, flags):
        self.original, self.optimized = flags.require("original"), flags.require("optimized")
        #: validate()'s keyword arguments.
        self.options = {name: flags.value(name) for name in (
            "top_k", "batch_size", "rtol", "atol", "min_within_tolerance", "min_top1_agreement", "samples")}


def flag_groups():
    return [
        ValidateFlags(),
        cli_flags.ModelFlags(spec_flag=False),  # how to load --original; --signature picks both models' signature
        cli_flags.DataFlags(default="synthetic", labels=True),
        cli_flags.OutputFlags("A file for the JSON report (default: stdout, with the summary on stderr)."),
        cli_flags.ThreadingFlags(),
    ]


def main(flags) -> int:
    from tftrt_toolkit.report import results, writers
    from tftrt_toolkit.runtime.session import ModelRunner, configure_threads
    from tftrt_toolkit.runtime.validate import validate

    own, model, data, output = flags[ValidateFlags], flags[cli_flags.ModelFlags], flags[cli_flags.DataFlags], flags[cli_flags.OutputFlags]
    to_file = output.path not in (None, "", "-")
    if to_file:
        writers.check_writable([output.path], overwrite=output.overwrite)
    threads = flags[cli_flags.ThreadingFlags].threads
    configure_threads(*threads)  # before anything loads: TF fixes its thread pools at start-up
    with ModelRunner(own.original, **model.load_options) as original_runner, \
            ModelRunner(own.optimized, signature_key=model.signature) as optimized_runner:
        report = validate(original_runner, optimized_runner, data=data.data, labels_csv=data.labels_csv,
                          strict_data=data.strict, **data.options, **own.options, threads=threads)
    # The report is written whether or not it passed: a failing CI job needs it most.
    if to_file:  # the file ValidationReport.save(path) writes from the Python API
        results.write_validation(report, output.path, overwrite=output.overwrite)
    else:
        sys.stdout.write(writers.json_text(report))
    summary = "\n".join(report.summary_lines()) + "\n"
    (sys.stdout if to_file else sys.stderr).write(summary)
    report.raise_if_failed()
    return 0
