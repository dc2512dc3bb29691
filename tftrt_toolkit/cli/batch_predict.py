"""tftrt batch-predict: predictions over many image files with Apache Beam, as sharded JSON Lines or CSV.

  tftrt batch-predict --model=DIR --data=DIR|'GLOB'[,GLOB...] --output=PREFIX [--top_k=5] [--format=json|csv]
      [--min_batch_size=1 --max_batch_size=32] [Beam options, e.g. --runner=DirectRunner
      --direct_num_workers=2 --direct_running_mode=multi_processing]

A local folder is read as every command reads one: its images, recursively (the files left
out are summed up in one line; --strict_data refuses them). Every file matching a glob (local
paths; gs://, s3:// where your Beam install has them; quote globs so the shell leaves them
alone) is an input. Each is decoded and preprocessed as `tftrt predict` does it (the mode
the model records unless --preprocess), batched by Beam, and run by
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

import sys
from typing import Sequence

from tftrt_toolkit.cli import flags as cli_flags

# main.py hands flags absl does not know to main() as Beam pipeline options.
PASSES_UNKNOWN_FLAGS = True

# Beam's worker processes log every bundle at INFO; keep the terminal to warnings unless asked.
_QUIET_WORKERS = "--default_sdk_harness_log_level=WARNING"


class BatchPredictFlags(cli_flags.FlagGroup):
    """batch-predict's own: predict's --top_k, --format (shards are JSON Lines for json/jsonl) and --labels, Beam's batch bounds and shards."""

    def add(self, flags):
        cli_flags.define_top_k(flags)
        cli_flags.define_output_format(flags)
        cli_flags.define_class_names(flags)
        flags.define("integer", "min_batch_size", 1, "Smallest batch Beam's adaptive batching gives RunInference.")
        flags.define("integer", "max_batch_size", 32, "Largest batch Beam's adaptive batching gives RunInference.")
        flags.define("integer", "num_shards", 0, "Prediction files to write (0: the Beam runner decides).")

    def parse(self, flags):
        #: batch_predict()'s keyword arguments; --format json and jsonl both mean JSON Lines shards.
        self.options = {
            "top_k": flags.value("top_k"), "labels": flags.value("labels"),
            "output_format": "csv" if flags.value("format") == "csv" else "jsonl",
            "min_batch_size": flags.value("min_batch_size"), "max_batch_size": flags.value("max_batch_size"),
            "num_shards": flags.value("num_shards"),
        }


def flag_groups():
    # A SavedModel directory only: workers load it with tf.saved_model.load, so --weights and
    # --unsafe_deserialization (Keras loading) do not apply.
    return [
        cli_flags.ModelFlags(loading=False),
        cli_flags.DataFlags(required=True, data_help="Images: a local folder, or globs of image files (local, gs://, s3://)."),
        cli_flags.OutputFlags("The prefix of the prediction shards: PREFIX-00000-of-0000N.jsonl (or .csv).", required=True),
        BatchPredictFlags(),
    ]


def main(flags, pipeline_args: Sequence[str] = ()) -> int:
    from tftrt_toolkit.errors import DataError
    from tftrt_toolkit.jobs.batch_predict import batch_predict, check_pipeline_args, require_beam

    require_beam()  # before anything else: without Beam, the one thing to say is how to get it
    model, data, output = flags[cli_flags.ModelFlags], flags[cli_flags.DataFlags], flags[cli_flags.OutputFlags]
    # Flags absl did not know arrive here: a misspelt batch-predict flag gets its suggestion.
    pipeline_args = check_pipeline_args(pipeline_args, other_flags=flags.names)
    if not any(arg.split("=", 1)[0] == _QUIET_WORKERS.split("=", 1)[0] for arg in pipeline_args):
        pipeline_args.append(_QUIET_WORKERS)
    specs = data.data if isinstance(data.data, list) else [data.data]
    result = batch_predict(
        model.spec, specs, output.path, overwrite=output.overwrite, signature_key=model.signature,
        strict_data=data.strict, **data.options, **flags[BatchPredictFlags].options,
        pipeline_args=pipeline_args,
    )
    if result.skipped_summary:
        print(f"tftrt batch-predict: {result.skipped_summary}", file=sys.stderr)
    errors = ", ".join(result.error_files) or "none"
    print(f"{result.images_predicted} predicted, {result.images_failed} failed in {result.seconds:.1f}s; "
          f"predictions: {len(result.prediction_files)} file(s) {output.path}-*.{result.output_format}; errors: {errors}")
    if not result.images_predicted and result.images_failed:
        raise DataError(f"none of the {result.images_failed} file(s) could be read and decoded; reasons in {errors}")
    return 0
