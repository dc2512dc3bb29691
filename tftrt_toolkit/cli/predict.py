"""tftrt predict: top-k labels (or raw outputs) for images or arrays, as JSON or CSV.

  tftrt predict --model=SPEC --data=PATH[,PATH...] [--top_k=5] [--format=json|jsonl|csv] [--output=FILE] [--labels=FILE]

Classifiers with 1000 (or 1001, background first) outputs get ImageNet names shipped with
the package; --labels=FILE (one name per line) names any other classifier's classes.
Softmax is applied only when the outputs are logits ("softmax_applied" in the JSON).
Other models get their raw outputs, named by signature output.
JSON goes to stdout unless --output; CSV has one row per image x rank
(image,rank,class_id,label,probability). --intra_op_threads/--inter_op_threads set
TensorFlow's thread pools and are recorded under "settings".
Files in an image folder that are not used (not images, unreadable, hidden) are summed up
in one line on stderr (`skipped 2 files: 1 not an image (.txt), 1 unreadable (broken.jpg)`)
and listed under "skipped_files" in the JSON; --strict_data makes them an error (exit 4).
"""

from tftrt_toolkit.cli import flags as cli_flags


class PredictFlags(cli_flags.FlagGroup):
    """predict's own: how many classes, their names, samples per call, the output format."""

    def add(self, flags):
        cli_flags.define_top_k(flags)
        cli_flags.define_class_names(flags)
        flags.define("integer", "batch_size", 8, "Samples per model call.")
        cli_flags.define_output_format(flags)

    def parse(self, flags):
        self.top_k, self.labels, self.batch_size = flags.value("top_k"), flags.value("labels"), flags.value("batch_size")
        self.format = flags.value("format")
        self.format_given = flags.present("format")


def flag_groups():
    return [
        cli_flags.ModelFlags(),
        cli_flags.DataFlags(required=True),
        PredictFlags(),
        cli_flags.OutputFlags("A file for the predictions (default: stdout; '-' is stdout too)."),
        cli_flags.ThreadingFlags(),
    ]


def main(flags) -> int:
    from tftrt_toolkit.report import results, writers
    from tftrt_toolkit.runtime.predict import predict
    from tftrt_toolkit.runtime.session import ModelRunner, configure_threads

    model, data, own, output = flags[cli_flags.ModelFlags], flags[cli_flags.DataFlags], flags[PredictFlags], flags[cli_flags.OutputFlags]
    output_format = own.format
    if not own.format_given and output.path and output.path.lower().endswith(".csv"):
        output_format = "csv"
    if output.path not in (None, "", "-"):
        writers.check_writable([output.path], overwrite=output.overwrite)
    threads = flags[cli_flags.ThreadingFlags].threads
    configure_threads(*threads)  # before anything loads: TF fixes its thread pools at start-up
    with ModelRunner(model.spec, **model.load_options) as runner:
        result = predict(runner, data.data, top_k=own.top_k, labels=own.labels, batch_size=own.batch_size,
                         threads=threads, strict_data=data.strict, **data.options)
    # The text PredictionResult.save(path) writes from the Python API.
    writers.emit(results.predictions_text(result, output_format), output.path, overwrite=output.overwrite)
    return 0
