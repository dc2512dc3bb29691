"""Batch predict: run a model over many image files with Apache Beam, writing sharded predictions.

    from tftrt_toolkit.jobs.batch_predict import batch_predict
    result = batch_predict("saved_models/efficientnet_lite0", "photos/*.jpg", "out/predictions",
                           pipeline_args=["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    result.prediction_files   # out/predictions-00000-of-00002.jsonl, ...
    result.error_files        # out/predictions-errors-00000-of-00001.jsonl (one record per bad file)

The same pipeline runs on any Beam runner (DirectRunner here; Dataflow, Flink, Spark with
their pipeline options):

    MatchFiles(globs) -> Reshuffle -> ReadMatches -> read + decode + preprocess ──> dead letter
      -> RunInference(SavedModelHandler, batched by BatchElements) -> records -> WriteToText shards

- Records have exactly ``tftrt predict``'s fields (``runtime.predict`` builds them):
  ``{"image": PATH, "predictions": [{"rank", "class_id", "label", "probability"}, ...]}`` for
  classifiers, ``{"image": PATH, "outputs": {name: values}}`` otherwise. CSV has predict's
  columns, one row per image x rank. Softmax is applied when the scores are logits, decided
  per image (predict decides over all its rows at once; Beam's batches change from run to
  run, so a per-image decision keeps each record independent of how it was batched).
- Decoding and preprocessing are the data module's (``decode_image``, ``preprocess_pixels``,
  the mode resolved from the model card like ``open_source`` does), so a file gives the same
  input here as in ``tftrt predict``.
- A file that cannot be read or decoded never fails the pipeline: it goes to the dead-letter
  output ``PREFIX-errors-SSSSS-of-NNNNN.EXT`` as ``{"image", "stage", "error"}``.
- Beam counters (namespace ``tftrt_batch_predict``): ``images_read``, ``images_predicted``,
  ``images_failed``; the distribution ``batch_size`` holds the sizes RunInference ran.

Why a model handler of our own and not Beam's ``TFModelHandlerTensor``: Beam's loads the
model with ``tf.keras.models.load_model``, which Keras 3 (TF 2.16+) refuses for plain
SavedModels — and plain SavedModels are what this toolkit writes (a TF-TRT conversion is
not a Keras model at all). Setting ``TF_USE_LEGACY_KERAS=1`` makes Beam's handler load it,
but ties every worker to tf-keras and calls the Keras object rather than the serving
signature the model was converted for. ``SavedModelHandler`` calls ``tf.saved_model.load``
and the signature function, the same path as ``tftrt predict`` and TF Serving, once per
worker process (RunInference shares the loaded model between the threads of a process).

Beam is optional (``pip install -e ".[beam]"``): this module imports without it, and
``batch_predict`` raises ``BackendUnavailable`` saying how to install it.
"""

from tftrt_toolkit.jobs.batch_predict.options import check_pipeline_args, prepare_output  # noqa: E402
from tftrt_toolkit.jobs.batch_predict.pipeline import (  # noqa: E402
    BatchPredictResult, batch_predict, build_pipeline, read_records,
)
from tftrt_toolkit.jobs.batch_predict.steps import (  # noqa: E402
    INSTALL_HINT, ModelPlan, ReadAndDecodeFn, SavedModelHandler, plan_model, prediction_record, require_beam,
)

__all__ = [
    "BatchPredictResult", "INSTALL_HINT", "ModelPlan", "ReadAndDecodeFn", "SavedModelHandler", "batch_predict",
    "build_pipeline", "check_pipeline_args", "plan_model", "prediction_record", "prepare_output", "read_records",
    "require_beam",
]
