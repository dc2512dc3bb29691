"""tftrt batch-predict: predictions over many image files with Apache Beam, as sharded JSON Lines or CSV.

  tftrt batch-predict --model=DIR --data='GLOB'[,GLOB...] --output=PREFIX [--top_k=5] [--format=json|csv]
      [--min_batch_size=1 --max_batch_size=32] [Beam options, e.g. --runner=DirectRunner
      --direct_num_workers=2 --direct_running_mode=multi_processing]

Every file matching the globs (local paths; gs://, s3:// where your Beam install has them;
quote globs so the shell leaves them alone) is decoded and preprocessed as `tftrt predict`
does it (the mode from the model card unless --preprocess), batched by Beam, and run by
RunInference with the SavedModel loaded once per worker (plain tf.saved_model.load).
Predictions: PREFIX-00000-of-0000N.jsonl (or .csv), one record per image with predict's
fields {"image", "predictions": [{"rank", "class_id", "label", "probability"}]}.
Files that cannot be read or decoded never stop the run: they go to
PREFIX-errors-00000-of-00001.jsonl (or .csv) with the reason. Shards an earlier run left
under PREFIX are an error unless --overwrite.

Beam pipeline options: every flag this command does not define goes to Beam's
PipelineOptions by name, as --name=value, anywhere on the line or after `--`
(--runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp, ...).
Beam must recognise each one: a misspelt flag is an error, not silently dropped.
Without Beam options the pipeline runs on the DirectRunner in this process.
Needs Apache Beam: pip install -e ".[beam]".
"""

from typing import Sequence

from tftrt_toolkit.cli import flags as cli_flags

# main.py hands flags absl does not know to main() as Beam pipeline options.
PASSES_UNKNOWN_FLAGS = True

# Beam's worker processes log every bundle at INFO; keep the terminal to warnings unless asked.
_QUIET_WORKERS = "--default_sdk_harness_log_level=WARNING"


def define_flags():
    # A SavedModel directory only: workers load it with tf.saved_model.load, so --weights and
    # --unsafe_deserialization (Keras loading) do not apply.
    return (cli_flags.define_model_flag() + cli_flags.define_signature_flag()
            + cli_flags.define_data_flag() + cli_flags.define_input_flags()
            + cli_flags.define_output_flags("The prefix of the prediction shards: PREFIX-00000-of-0000N.jsonl (or .csv).")
            + cli_flags.define_batch_predict_flags())


def main(pipeline_args: Sequence[str] = ()) -> int:
    from tftrt_toolkit.errors import DataError
    from tftrt_toolkit.jobs.batch_predict import batch_predict, check_pipeline_args, require_beam

    require_beam()  # before anything else: without Beam, the one thing to say is how to get it
    FLAGS = cli_flags.FLAGS
    model = cli_flags.require("model")
    data = cli_flags.require("data")
    output = cli_flags.require("output")
    # Flags absl did not know arrive here: a misspelt batch-predict flag gets its suggestion.
    pipeline_args = check_pipeline_args(pipeline_args, other_flags=define_flags())
    if not any(arg.split("=", 1)[0] == _QUIET_WORKERS.split("=", 1)[0] for arg in pipeline_args):
        pipeline_args.append(_QUIET_WORKERS)
    result = batch_predict(
        model, list(data), output,
        top_k=FLAGS.top_k, output_format=cli_flags.batch_predict_format_from_flags(),
        min_batch_size=FLAGS.min_batch_size, max_batch_size=FLAGS.max_batch_size, num_shards=FLAGS.num_shards,
        overwrite=FLAGS.overwrite, signature_key=FLAGS.signature, labels=FLAGS.labels,
        **cli_flags.data_options_from_flags(),
        pipeline_args=pipeline_args,
    )
    errors = ", ".join(result.error_files) or "none"
    print(f"{result.images_predicted} predicted, {result.images_failed} failed in {result.seconds:.1f}s; "
          f"predictions: {len(result.prediction_files)} file(s) {output}-*.{result.output_format}; errors: {errors}")
    if not result.images_predicted and result.images_failed:
        raise DataError(f"none of the {result.images_failed} file(s) could be read and decoded; reasons in {errors}")
    return 0
