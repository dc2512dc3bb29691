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


def define_flags():
    return (cli_flags.define_model_flags() + cli_flags.define_data_flags() + cli_flags.define_predict_flags()
            + cli_flags.define_output_flags("A file for the predictions (default: stdout; '-' is stdout too).")
            + cli_flags.define_threading_flags())


def main() -> int:
    from tftrt_toolkit.report import results, writers
    from tftrt_toolkit.runtime.predict import predict
    from tftrt_toolkit.runtime.session import ModelRunner, configure_threads

    FLAGS = cli_flags.FLAGS
    model = cli_flags.require("model")
    data = cli_flags.data_from_flags()
    if data is None:
        cli_flags.require("data")
    output = FLAGS.output
    output_format = FLAGS.format
    if not FLAGS["format"].present and output and output.lower().endswith(".csv"):
        output_format = "csv"
    if output not in (None, "", "-"):
        writers.check_writable([output], overwrite=FLAGS.overwrite)
    threads = cli_flags.threading_from_flags()
    configure_threads(*threads)  # before anything loads: TF fixes its thread pools at start-up
    with ModelRunner(model, **cli_flags.model_load_options_from_flags()) as runner:
        result = predict(runner, data, top_k=FLAGS.top_k, labels=FLAGS.labels, batch_size=FLAGS.batch_size,
                         threads=threads, strict_data=FLAGS.strict_data, **cli_flags.data_options_from_flags())
    # The text PredictionResult.save(path) writes from the Python API.
    writers.emit(results.predictions_text(result, output_format), output, overwrite=FLAGS.overwrite)
    return 0
